"""How an LLM call can fail; kept free of heavy imports so sender worker processes start light."""
from __future__ import annotations


class LLMError(Exception):
    """A call that failed for good (after retries, or a permanent error)."""


class BudgetExceeded(Exception):
    """The call would take the campaign past its dollar or token budget."""


class TransientError(Exception):
    """A fault worth retrying; ``retry_after`` in seconds when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
