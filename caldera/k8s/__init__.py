"""Kubernetes core API models (PodSpec and what it references), quantities and shared meta types.

`caldera.k8s.pod` is generated from the Kubernetes OpenAPI metadata by `caldera.k8s.codegen`;
the rest is written by hand.
"""
