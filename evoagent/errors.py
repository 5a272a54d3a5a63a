"""Exceptions that the CLI turns into one line and exit status 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad file, bad key, bad SQL); never a bug."""
