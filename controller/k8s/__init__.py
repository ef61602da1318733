"""Kubernetes-facing pieces: resource names and helpers, and an in-process API server emulator."""
