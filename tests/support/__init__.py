"""Test helpers that are not fixtures of their own: the ASL interpreter, the callback receiver."""
