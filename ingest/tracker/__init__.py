"""Usage tracker for the app's services: record each paid AI call as a canonical usage event.

Import it cheaply: it needs only the standard library, never the warehouse driver, dbt or a
dataframe library. Events go to append-only JSON Lines segments in a spool folder, and
`usage-warehouse ingest` lands the closed segments.
"""

from ingest.tracker.adapters import (
    anthropic_event_fields,
    gemini_event_fields,
    imagen_event_fields,
    openai_event_fields,
    veo_event_fields,
)
from ingest.tracker.context import TrackingContext, current_context, use_context
from ingest.tracker.tracker import Tracker, TrackerStats

__all__ = [
    "Tracker",
    "TrackerStats",
    "TrackingContext",
    "anthropic_event_fields",
    "current_context",
    "gemini_event_fields",
    "imagen_event_fields",
    "openai_event_fields",
    "use_context",
    "veo_event_fields",
]
