"""Adapters that implement the ports: boto3 (real EC2) and the simulated VPC."""
