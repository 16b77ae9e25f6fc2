"""EventService on the wire: each RPC bound to its EventService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import event_connect
from internal.auth.handlers import Forward, InProject, ServiceHandler
from internal.domain.event.service import EventService


class EventHandler(ServiceHandler[EventService], event_connect.EventService):
    query_events = InProject(EventService.query_events)
    query_global_events = Forward(EventService.query_global_events)
