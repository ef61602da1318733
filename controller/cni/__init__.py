"""netalloc-cni: the node-side CNI plugin that wires a pod to what its PodNetworkAllocation says."""
