"""The pure core: limits, pool planning, allocation decisions and the allocation state machine. No I/O."""
