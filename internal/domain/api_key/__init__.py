"""API keys: a project's credentials for services, shown once and stored only as a keyed hash."""
