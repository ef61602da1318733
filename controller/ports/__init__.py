"""Ports: the interfaces the core and engine use to reach the outside world."""
