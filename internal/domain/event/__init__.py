"""The event log's read side: EventService.QueryEvents and QueryGlobalEvents (internal/events writes it)."""
