"""Altalune application package."""
