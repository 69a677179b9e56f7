"""Constants that fix what the sample contains: required fields and operations, quirks, shares."""

from __future__ import annotations

REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "created_at", "provider", "operation")

# Every sample of 500 or more lines contains each of these (provider, operation) pairs as a
# well-formed event. The first deck of calls contains every scenario and takes at most 195 lines
# plus resent ones, and dirt is only applied to a pair that already has a clean line.
REQUIRED_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("google", "generate_image"),
        ("google", "analyze_image"),
        ("google", "analyze_text"),
        ("google", "analyze_hook"),
        ("google", "generate_video"),
        ("google", "generate_avatar_image"),
        ("google", "agent_run"),
        ("openai", "embed"),
        ("openai", "embed_batch"),
        ("openai", "agent_run"),
        ("anthropic", "agent_run"),
    }
)

# Experimental Gemini names that genai-prices 0.2.3 does not list, so these events are unpriced.
UNKNOWN_MODELS: tuple[str, ...] = ("gemini-2.5-flash-exp-0923", "gemini-2.5-flash-lab-1021")

# Models billed per unit (video seconds, images) rather than per token. genai-prices 0.2.3 does
# not list them, so the warehouse needs its own prices for them.
UNIT_PRICED_MODELS: tuple[str, ...] = (
    "veo-3.0-generate-001",
    "veo-3.0-fast-generate-001",
    "imagen-4.0-generate-001",
)

MALFORMED_KINDS: tuple[str, ...] = (
    "truncated_json",
    "missing_required_field",
    "negative_token_count",
    "invalid_timestamp",
    "not_an_object",
)

# Shares of all lines (duplicates, malformed) or of well-formed events (no organization).
DUPLICATE_LINE_SHARE = 0.005
MALFORMED_LINE_SHARE = 0.002
NO_ORGANIZATION_SHARE = 0.01

# Shares of the Gemini analyze_* calls. Each quirk ends up on about 1% of the events or fewer.
UNKNOWN_MODEL_SHARE = 0.045
UNMETERED_STREAM_SHARE = 0.012
CUMULATIVE_STREAM_SHARE = 0.03
MODELS_PREFIX_SHARE = 0.08

# Calls per scenario in each shuffled deck of 88 calls (about 135 lines, because an agent run
# writes one line per model request).
SCENARIO_DECK: tuple[tuple[str, int], ...] = (
    ("gemini_generate_image", 7),
    ("gemini_analyze_image", 9),
    ("gemini_analyze_text", 14),
    ("gemini_analyze_hook", 8),
    ("veo_generate_video", 4),
    ("avatar_generate_image", 5),
    ("doc_embed", 23),
    ("doc_embed_batch", 1),
    ("agent_brand_research", 4),
    ("agent_script_generation", 5),
    ("agent_caption_writer", 4),
    ("agent_comics", 4),
)
