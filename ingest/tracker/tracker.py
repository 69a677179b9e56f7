"""The tracker that the app's services call after each paid AI API call.

`Tracker` turns a provider response into one canonical usage event and appends it to the spool.
Recording catches every Exception: a failure is logged and counted in `Tracker.stats`, and
the call returns normally, so tracking cannot break a user's request. Only BaseException
(KeyboardInterrupt, SystemExit) propagates.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from ingest.tracker.adapters import (
    anthropic_event_fields,
    gemini_event_fields,
    imagen_event_fields,
    openai_event_fields,
    veo_event_fields,
)
from ingest.tracker.context import TrackingContext, current_context
from ingest.tracker.spool import SegmentWriter

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_MAX_EVENTS = 1000
DEFAULT_SEGMENT_MAX_SECONDS = 60.0
# At most one failure log line per interval, so a full disk does not flood the app's logs.
DEFAULT_FAILURE_LOG_INTERVAL_SECONDS = 60.0

# Fields in the order they are written, so spool lines are easy to read side by side.
_FIELD_ORDER = (
    "event_id",
    "created_at",
    "provider",
    "operation",
    "model",
    "platform",
    "service",
    "tool_name",
    "user_id",
    "organization_id",
    "request_id",
    "run_id",
    "service_tier",
    "usage",
    "units",
    "unit_type",
    "attributes",
    "metadata",
)


@dataclass
class TrackerStats:
    """Counts since the tracker started: events written, events lost, segments recovered."""

    recorded: int = 0
    failed: int = 0
    recovered_segments: int = 0


class Tracker:
    """Record canonical usage events into JSON Lines segments in ``spool_dir``.

    A segment closes when it contains ``segment_max_events`` events, when an event arrives after it
    has been open ``segment_max_seconds``, on `rotate_if_due`, and on `flush_segment` or `close`.
    Creating the tracker recovers open segments left by dead processes. Safe to share between
    threads. Raise ValueError for invalid limits. Recording catches every Exception and counts it instead.
    """

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        *,
        segment_max_events: int = DEFAULT_SEGMENT_MAX_EVENTS,
        segment_max_seconds: float = DEFAULT_SEGMENT_MAX_SECONDS,
        failure_log_interval_seconds: float = DEFAULT_FAILURE_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.stats = TrackerStats()
        self._lock = threading.Lock()
        self._clock = clock
        self._writer = SegmentWriter(
            self.spool_dir, max_events=segment_max_events, max_seconds=segment_max_seconds, clock=clock
        )
        self._failure_log_interval = failure_log_interval_seconds
        self._last_failure_logged_at: float | None = None
        self._unlogged_failures = 0
        self._recover()

    # --- recording ---------------------------------------------------------------------------

    def record(self, event_fields: Mapping[str, Any], ctx: TrackingContext | None = None) -> str | None:
        """Append one event built from canonical fields; return its event id, or None if it failed.

        ``event_id`` (a new UUID) and ``created_at`` (now, in UTC) are filled in when missing, and
        the context (``ctx``, else `current_context`) fills user_id, organization_id, tool_name,
        service and run_id where ``event_fields`` has none. Decimal values are written as
        strings and datetimes as RFC 3339, both of which ingest reads.
        """
        return self.record_built(lambda: dict(event_fields), ctx, None, None)

    def track_openai(
        self,
        response: Any,
        ctx: TrackingContext | None = None,
        *,
        operation: str | None = None,
        model: str | None = None,
        platform: str = "api",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record an OpenAI chat, Responses, embeddings or images response (see `openai_event_fields`)."""
        return self.record_built(
            lambda: openai_event_fields(response, operation=operation, model=model, platform=platform),
            ctx,
            attributes,
            metadata,
        )

    def track_anthropic(
        self,
        response: Any,
        ctx: TrackingContext | None = None,
        *,
        operation: str | None = None,
        model: str | None = None,
        platform: str = "api",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record an Anthropic Messages response (see `anthropic_event_fields`)."""
        return self.record_built(
            lambda: anthropic_event_fields(response, operation=operation, model=model, platform=platform),
            ctx,
            attributes,
            metadata,
        )

    def track_gemini(
        self,
        response: Any,
        ctx: TrackingContext | None = None,
        *,
        operation: str | None = None,
        model: str | None = None,
        platform: str = "api",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record a Gemini generateContent response (see `gemini_event_fields`)."""
        return self.record_built(
            lambda: gemini_event_fields(response, operation=operation, model=model, platform=platform),
            ctx,
            attributes,
            metadata,
        )

    def track_veo(
        self,
        request: Any,
        operation_result: Any,
        ctx: TrackingContext | None = None,
        *,
        operation: str | None = None,
        model: str | None = None,
        platform: str = "api",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record a finished Veo operation, billed per second of video (see `veo_event_fields`)."""
        return self.record_built(
            lambda: veo_event_fields(
                request, operation_result, operation=operation, model=model, platform=platform
            ),
            ctx,
            attributes,
            metadata,
        )

    def track_imagen(
        self,
        response: Any,
        ctx: TrackingContext | None = None,
        *,
        operation: str | None = None,
        model: str | None = None,
        platform: str = "api",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record an Imagen predict response, billed per image (see `imagen_event_fields`)."""
        return self.record_built(
            lambda: imagen_event_fields(response, operation=operation, model=model, platform=platform),
            ctx,
            attributes,
            metadata,
        )

    # --- segments ----------------------------------------------------------------------------

    def rotate_if_due(self) -> None:
        """Close the open segment if it is older than the time limit; call it from an idle timer."""
        self._run_segment_step("rotate", self._writer.rotate_if_due)

    def flush_segment(self) -> None:
        """Close the open segment now, so ingest can ship it; the next event opens a new one."""
        self._run_segment_step("close", self._writer.close_segment)

    def close(self) -> None:
        """Close the open segment at shutdown. Events recorded later open a new segment."""
        self.flush_segment()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- building blocks for integrations (ingest.tracker.pydantic_ai) ------------------------

    def record_built(
        self,
        build_fields: Callable[[], Mapping[str, Any]],
        ctx: TrackingContext | None,
        attributes: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> str | None:
        """Build an event with `build_fields` and append it. An Exception is counted and logged, not raised."""
        context = ctx if ctx is not None else current_context()
        event_id = str(uuid.uuid4())
        try:
            event = _build_event(build_fields(), context, event_id, attributes, metadata)
            event_id = str(event["event_id"])
            line = _encode_line(event)
            with self._lock:
                self._writer.append(line)
                self.stats.recorded += 1
            return event_id
        # Recording must never break the app's request, so every error is caught here, logged
        # and counted. BaseException (KeyboardInterrupt, SystemExit) still propagates.
        except Exception as error:
            self.report_failure(error, event_id, context)
            return None

    def report_failure(self, error: Exception, event_id: str, context: TrackingContext | None) -> None:
        """Count a failed recording and log it, at most one log line per interval."""
        with self._lock:
            self.stats.failed += 1
            now = self._clock()
            last = self._last_failure_logged_at
            if last is not None and now - last < self._failure_log_interval:
                self._unlogged_failures += 1
                return
            unlogged = self._unlogged_failures
            failed = self.stats.failed
            self._last_failure_logged_at = now
            self._unlogged_failures = 0

        logger.error(
            "Failed to record usage event %s (user %s, organization %s, run %s) in spool %s: %s; "
            "%s earlier failures were not logged, %s failed in total",
            event_id,
            context.user_id if context else None,
            context.organization_id if context else None,
            context.run_id if context else None,
            self.spool_dir,
            error,
            unlogged,
            failed,
            exc_info=error,
        )

    def _run_segment_step(self, step: str, action: Callable[[], object]) -> None:
        try:
            with self._lock:
                action()
        except OSError as error:
            logger.error("Failed to %s spool segment in %s: %s", step, self.spool_dir, error)

    def _recover(self) -> None:
        try:
            with self._lock:
                recovered = self._writer.recover()
        except OSError as error:
            logger.error("Failed to recover open spool segments in %s: %s", self.spool_dir, error)
            return

        self.stats.recovered_segments += len(recovered)
        for segment in recovered:
            if segment.truncated_bytes:
                logger.warning(
                    "Recovered spool segment %s as %s, dropping a partial last line of %s bytes",
                    segment.open_path,
                    segment.closed_path,
                    segment.truncated_bytes,
                )
            else:
                logger.info("Recovered spool segment %s as %s", segment.open_path, segment.closed_path)


def _build_event(
    fields: Mapping[str, Any],
    context: TrackingContext | None,
    event_id: str,
    attributes: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Merge the defaults, the context and the event fields (which win), then check the required ones."""
    event: dict[str, Any] = {"event_id": event_id, "created_at": _utc_now()}
    if context is not None:
        event.update(context.as_event_fields())
    event.update({name: value for name, value in fields.items() if value is not None})

    if attributes:
        event["attributes"] = {**(event.get("attributes") or {}), **attributes}
    if metadata:
        event["metadata"] = {**(event.get("metadata") or {}), **metadata}

    for name in ("event_id", "provider", "operation"):
        value = event.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"missing or invalid {name}={value!r}: every usage event needs it as a string")

    ordered = {name: event[name] for name in _FIELD_ORDER if name in event}
    ordered.update({name: value for name, value in event.items() if name not in ordered})
    return ordered


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _encode_line(event: Mapping[str, Any]) -> bytes:
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_encode_value)
    return (text + "\n").encode("utf-8")


def _encode_value(value: Any) -> str:
    """Encode the values json cannot: Decimal as its exact text, dates and datetimes as RFC 3339."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} value into a usage event")
