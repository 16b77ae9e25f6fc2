"""The current request's deadline, shared by the interceptor that sets it and the database that obeys it."""

from __future__ import annotations

import time
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("altalune_deadline", default=None)


def set_deadline(seconds_from_now: float) -> None:
    _deadline.set(time.monotonic() + seconds_from_now)


def remaining_ms() -> int | None:
    """Milliseconds left for this request (at least 1), or None outside a request."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(1, int((deadline - time.monotonic()) * 1000))


def expired() -> bool:
    deadline = _deadline.get()
    return deadline is not None and time.monotonic() >= deadline
