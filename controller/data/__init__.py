"""Data shipped with the package: instance-type limits, so `netalloc plan` needs no network."""
