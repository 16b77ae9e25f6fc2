"""Roles: named sets of permissions (global). The built-in ones are also the project roles, so they keep their names."""
