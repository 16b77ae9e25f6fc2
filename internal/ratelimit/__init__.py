"""Per-credential rate limits, shared by the worker processes of one machine (see limiter.py)."""
