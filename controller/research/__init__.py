"""netalloc's research harness: `netalloc compare`, a deterministic discrete-event simulation of the
AWS resource controller's annotation approach against netalloc's PodNetworkAllocation approach."""
