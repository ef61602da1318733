"""netalloc: AWS VPC networking for pods, recorded in PodNetworkAllocation objects."""
