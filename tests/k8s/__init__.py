"""Tests of the Kubernetes manifests, CRDs and the API emulator."""
