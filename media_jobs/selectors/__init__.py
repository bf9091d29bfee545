"""Reads shared by the admin, the API and the commands (querysets, no side effects)."""
