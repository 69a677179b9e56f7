"""Tracking context: the user, organization, tool and service that the app passes down with each AI call."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class TrackingContext:
    """The user, organization, tool and service behind a call, plus the agent run it belongs to."""

    user_id: str | None
    organization_id: str | None
    tool_name: str | None
    service: str | None
    run_id: str | None = None

    def as_event_fields(self) -> dict[str, str]:
        """Return the canonical event fields of this context, leaving out the ones that are None."""
        fields = {
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "tool_name": self.tool_name,
            "service": self.service,
            "run_id": self.run_id,
        }
        return {name: value for name, value in fields.items() if value is not None}


_current: contextvars.ContextVar[TrackingContext | None] = contextvars.ContextVar(
    "usage_tracking_context", default=None
)


def current_context() -> TrackingContext | None:
    """Return the context set by the innermost `use_context` block, or None outside any block."""
    return _current.get()


@contextmanager
def use_context(context: TrackingContext) -> Iterator[TrackingContext]:
    """Make ``context`` the current context inside the block, for calls that get no explicit one.

    The value follows contextvars rules, so each asyncio task and each thread has its own.
    """
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
