"""Projects: the tenants. Every project-scoped table has one list partition per project."""
