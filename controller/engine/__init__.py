"""The executor side: runs the core's plans and decisions against the ports and reports back."""
