"""Employees: the reference project-scoped domain (and the template for new ones)."""
