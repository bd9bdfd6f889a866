"""One scorer per signal; each returns a score in [0, 1] per endpoint (higher is better)."""
