"""Users: the people known to the service (global). Deactivated, never deleted, so audit trails keep their subject."""
