"""The app's PydanticAI agents: provider, models and typical token counts of each."""

from __future__ import annotations

from typing import NamedTuple


class AgentProfile(NamedTuple):
    provider: str
    models: tuple[tuple[str, float], ...]
    requests: tuple[int, int]
    """Minimum and maximum model requests per run."""
    prefix_tokens: int
    """Median size of the system prompt and tool definitions, the prefix that caching reuses."""
    step_tokens: int
    """Median tokens each tool result adds to the history."""
    output_tokens: int
    """Median visible output tokens per request."""
    thinks: bool = False
    """Whether requests also spend reasoning tokens."""


AGENTS: dict[str, AgentProfile] = {
    "brand_research": AgentProfile(
        provider="anthropic",
        models=(("claude-sonnet-4-5-20250929", 1.0),),
        requests=(3, 7),
        prefix_tokens=3800,
        step_tokens=2500,
        output_tokens=450,
    ),
    "script_generation": AgentProfile(
        provider="openai",
        models=(("gpt-4.1", 0.8), ("gpt-4o-mini-2024-07-18", 0.2)),
        requests=(2, 4),
        prefix_tokens=1600,
        step_tokens=400,
        output_tokens=900,
    ),
    "caption_writer": AgentProfile(
        provider="openai",
        models=(("gpt-4o-mini-2024-07-18", 1.0),),
        requests=(2, 3),
        prefix_tokens=900,
        step_tokens=200,
        output_tokens=150,
    ),
    "comics": AgentProfile(
        provider="google",
        models=(("gemini-2.5-flash", 1.0),),
        requests=(3, 5),
        prefix_tokens=2200,
        step_tokens=600,
        output_tokens=700,
        thinks=True,
    ),
}
