"""Trusted writes: the event log (one append-only stream per project and a global one) and the
idempotency records of writes that carry a request_id. See docs/trusted-writes.md."""
