"""Permissions: the read-only catalog of "resource:action" names the RPCs require; it changes only by migration."""
