"""Caldera: a Kthena-compatible control plane for LLM serving on Volcano."""

__version__ = "0.1.0"
