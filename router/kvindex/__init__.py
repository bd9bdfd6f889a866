"""Prefix-cache indexes: approximate (from the router's own decisions) and precise (from KV events)."""
