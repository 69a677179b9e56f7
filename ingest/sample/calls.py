"""The calls the app makes, one scenario each, built as the usage events it logs for them."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import NamedTuple

from ingest.sample.agents import AGENTS, AgentProfile
from ingest.sample.constants import (
    CUMULATIVE_STREAM_SHARE,
    MODELS_PREFIX_SHARE,
    SCENARIO_DECK,
    UNKNOWN_MODEL_SHARE,
    UNKNOWN_MODELS,
    UNMETERED_STREAM_SHARE,
)
from ingest.sample.payloads import (
    Event,
    Tokens,
    anthropic_usage,
    canonical_counts,
    gemini_usage_metadata,
    openai_chat_usage,
    openai_embedding_usage,
)
from ingest.sample.people import Population, User
from ingest.sample.random_values import (
    BASE64URL_TABLE,
    lognormal_int,
    pick,
    random_text,
    random_uuid,
)
from ingest.sample.timeline import Timeline

# The app's own per-unit estimates in USD. They can differ from the prices the warehouse uses.
_VEO_ESTIMATE_PER_SECOND: dict[tuple[str, bool], float] = {
    ("veo-3.0-generate-001", True): 0.40,
    ("veo-3.0-generate-001", False): 0.20,
    ("veo-3.0-fast-generate-001", True): 0.15,
    ("veo-3.0-fast-generate-001", False): 0.10,
}
_IMAGEN_ESTIMATE_PER_IMAGE = 0.04

# Tokens per image as Gemini counts them: 258 per input tile of up to 768x768 pixels, and 1290
# per generated image of up to 1024x1024 pixels.
_GEMINI_IMAGE_TILE_TOKENS = 258
_GEMINI_OUTPUT_IMAGE_TOKENS = 1290


class _GeminiCall(NamedTuple):
    """Values shared by the events of one generateContent call."""

    user: User
    operation: str
    model: str
    platform: str
    tool_name: str
    request_id: str


class _AgentRun(NamedTuple):
    """Values shared by the events of one agent run."""

    agent: str
    profile: AgentProfile
    model: str
    run_id: str
    user: User
    canonical: bool
    """Log PydanticAI's canonical counts rather than the provider's usage payload."""
    cache_ttl_1h: bool
    """Cache the prefix for one hour rather than five minutes (Anthropic)."""


class CallFactory:
    """Builder of the events of one call: one event, or one per model request or stream snapshot."""

    def __init__(self, rng: random.Random, timeline: Timeline) -> None:
        self._rng = rng
        self._timeline = timeline
        self._population = Population(rng)
        self._deck: list[str] = []
        self._scenarios: dict[str, Callable[[int, User, int], list[Event]]] = {
            "gemini_generate_image": self._gemini_generate_image,
            "gemini_analyze_image": self._gemini_analyze_image,
            "gemini_analyze_text": self._gemini_analyze_text,
            "gemini_analyze_hook": self._gemini_analyze_hook,
            "veo_generate_video": self._veo_generate_video,
            "avatar_generate_image": self._avatar_generate_image,
            "doc_embed": self._doc_embed,
            "doc_embed_batch": self._doc_embed_batch,
        }
        for agent in AGENTS:
            self._scenarios[f"agent_{agent}"] = functools.partial(self._agent_run, agent)

    def next_call(self, at_ms: int, limit: int) -> list[Event]:
        """Return the events of the next call, which starts at ``at_ms``: 1 to ``limit`` of them."""
        if not self._deck:
            # Shuffled decks rather than independent draws, so every scenario occurs in every
            # deck of 88 calls, however small the sample.
            self._deck = [name for name, count in SCENARIO_DECK for _ in range(count)]
            self._rng.shuffle(self._deck)
        scenario = self._scenarios[self._deck.pop()]
        return scenario(at_ms, self._population.pick(self._rng), limit)

    # Event shape ------------------------------------------------------------------------

    def _event(
        self,
        at_ms: int,
        user: User,
        *,
        provider: str,
        operation: str,
        model: str,
        platform: str,
        service: str,
        tool_name: str,
    ) -> Event:
        return {
            "event_id": random_uuid(self._rng),
            "created_at": self._timeline.format(self._timeline.clamp(at_ms)),
            "provider": provider,
            "operation": operation,
            "model": model,
            "platform": platform,
            "service": service,
            "tool_name": tool_name,
            "user_id": user.user_id,
            "organization_id": user.organization_id,
        }

    def _metadata(self, at_ms: int) -> Event:
        return {"app_version": self._timeline.app_version(self._timeline.clamp(at_ms))}

    def _gemini_response_id(self) -> str:
        return random_text(self._rng, 23, BASE64URL_TABLE)

    # Gemini -----------------------------------------------------------------------------

    def _gemini_generate_image(self, at_ms: int, user: User, limit: int) -> list[Event]:
        rng = self._rng
        platform = "vertex" if rng.random() < 0.1 else "api"
        reference_image_tokens = _GEMINI_IMAGE_TILE_TOKENS if rng.random() < 0.3 else 0
        prompt_tokens = lognormal_int(rng, 60, 0.7, 5, 2000) + reference_image_tokens
        text_tokens = rng.randint(5, 40) if rng.random() < 0.5 else 0
        tokens = Tokens(input=prompt_tokens, output=_GEMINI_OUTPUT_IMAGE_TOKENS + text_tokens)

        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_image",
            model=self._gemini_model_name("gemini-2.5-flash-image", platform),
            platform=platform,
            service="GeminiService",
            tool_name="Ad Creator" if rng.random() < 0.8 else "Content Pipeline",
        )
        event["request_id"] = self._gemini_response_id()
        event["usage"] = gemini_usage_metadata(
            tokens,
            input_image_tokens=reference_image_tokens,
            output_image_tokens=_GEMINI_OUTPUT_IMAGE_TOKENS,
            traffic_type="ON_DEMAND" if platform == "vertex" else None,
        )
        event["units"] = 1
        event["unit_type"] = "images"
        event["attributes"] = {"aspect_ratio": rng.choice(("1:1", "9:16", "16:9"))}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _gemini_analyze_image(self, at_ms: int, user: User, limit: int) -> list[Event]:
        rng = self._rng
        image_tokens = _GEMINI_IMAGE_TILE_TOKENS * rng.choice((1, 1, 2, 4, 6))
        thinks = rng.random() < 0.7
        visible_output = lognormal_int(rng, 300, 0.7, 1, 8192)
        reasoning = lognormal_int(rng, 500, 0.8, 1, 24_576) if thinks else 0
        tokens = Tokens(
            input=lognormal_int(rng, 300, 0.6, 10, 20_000) + image_tokens,
            output=visible_output + reasoning,
            reasoning=reasoning,
        )
        tool_name = "Ad Creator" if rng.random() < 0.5 else "Content Pipeline"
        return self._gemini_content(
            at_ms,
            user,
            limit,
            "analyze_image",
            "gemini-2.5-flash",
            tool_name,
            tokens,
            image_tokens,
            streams=False,
        )

    def _gemini_analyze_text(self, at_ms: int, user: User, limit: int) -> list[Event]:
        rng = self._rng
        model = "gemini-2.5-flash" if rng.random() < 0.8 else "gemini-2.5-pro"
        # Flash may run with a thinking budget of zero, but Pro cannot turn thinking off.
        thinks = model == "gemini-2.5-pro" or rng.random() < 0.7
        tokens = self._gemini_text_tokens(
            prompt_median=1400, output_median=350, reasoning_median=700, thinks=thinks
        )
        tool_name = "Content Pipeline" if rng.random() < 0.6 else "Knowledge Base"
        return self._gemini_content(
            at_ms, user, limit, "analyze_text", model, tool_name, tokens, 0, streams=True
        )

    def _gemini_analyze_hook(self, at_ms: int, user: User, limit: int) -> list[Event]:
        model = "gemini-2.5-flash" if self._rng.random() < 0.6 else "gemini-2.5-pro"
        tokens = self._gemini_text_tokens(
            prompt_median=900, output_median=250, reasoning_median=1200, thinks=True
        )
        return self._gemini_content(
            at_ms, user, limit, "analyze_hook", model, "Ad Creator", tokens, 0, streams=True
        )

    def _gemini_text_tokens(
        self, *, prompt_median: int, output_median: int, reasoning_median: int, thinks: bool
    ) -> Tokens:
        rng = self._rng
        prompt = lognormal_int(rng, prompt_median, 0.9, 20, 250_000)
        visible_output = lognormal_int(rng, output_median, 0.8, 1, 8192)
        reasoning = lognormal_int(rng, reasoning_median, 0.9, 1, 24_576) if thinks else 0
        # Implicit caching only hits long prompts that repeat a recent prefix. The 1024-token
        # minimum of Flash is used for Pro too.
        cached = 0
        if prompt >= 1024 and rng.random() < 0.25:
            cached = int(prompt * rng.uniform(0.3, 0.9))
        return Tokens(
            input=prompt, cached=cached, output=visible_output + reasoning, reasoning=reasoning
        )

    def _gemini_content(
        self,
        at_ms: int,
        user: User,
        limit: int,
        operation: str,
        model: str,
        tool_name: str,
        tokens: Tokens,
        input_image_tokens: int,
        *,
        streams: bool,
    ) -> list[Event]:
        """Build a generateContent call, with its quirks: unknown model, lost or resent usage."""
        rng = self._rng
        platform = "vertex" if rng.random() < 0.1 else "api"
        if rng.random() < UNKNOWN_MODEL_SHARE:
            model = rng.choice(UNKNOWN_MODELS)
        call = _GeminiCall(
            user=user,
            operation=operation,
            model=self._gemini_model_name(model, platform),
            platform=platform,
            tool_name=tool_name,
            request_id=self._gemini_response_id(),
        )

        stream_draw = rng.random() if streams else 1.0
        if stream_draw < UNMETERED_STREAM_SHARE:
            # The stream ended before its final chunk, which is the one that carries usage.
            return [self._gemini_event(call, at_ms, None, stream=True)]
        if limit >= 2 and stream_draw < UNMETERED_STREAM_SHARE + CUMULATIVE_STREAM_SHARE:
            return self._gemini_snapshots(call, at_ms, tokens, input_image_tokens, limit)

        usage = gemini_usage_metadata(
            tokens,
            input_image_tokens=input_image_tokens,
            candidate_details=platform == "vertex",
            traffic_type="ON_DEMAND" if platform == "vertex" else None,
        )
        return [self._gemini_event(call, at_ms, usage, stream=False)]

    def _gemini_snapshots(
        self, call: _GeminiCall, at_ms: int, tokens: Tokens, input_image_tokens: int, limit: int
    ) -> list[Event]:
        """Build the usage the app logged from several chunks of one stream.

        Each snapshot is cumulative, so the last one contains the total and the earlier ones
        must not be added to it.
        """
        rng = self._rng
        snapshots = min(rng.choice((2, 3)), limit)
        visible_output = tokens.output - tokens.reasoning
        traffic_type = "ON_DEMAND" if call.platform == "vertex" else None
        events = []
        moment_ms = at_ms
        for index in range(1, snapshots + 1):
            # Thinking finishes before the visible output streams, so only the candidates grow.
            partial_output = max(1, visible_output * index // snapshots)
            partial = tokens._replace(output=partial_output + tokens.reasoning)
            usage = gemini_usage_metadata(
                partial, input_image_tokens=input_image_tokens, traffic_type=traffic_type
            )
            events.append(self._gemini_event(call, moment_ms, usage, stream=True))
            moment_ms += rng.randint(400, 4000)
        return events

    def _gemini_event(
        self, call: _GeminiCall, at_ms: int, usage: Event | None, *, stream: bool
    ) -> Event:
        event = self._event(
            at_ms,
            call.user,
            provider="google",
            operation=call.operation,
            model=call.model,
            platform=call.platform,
            service="GeminiService",
            tool_name=call.tool_name,
        )
        event["request_id"] = call.request_id
        if usage is not None:
            event["usage"] = usage
        if stream:
            event["attributes"] = {"stream": True}
        event["metadata"] = self._metadata(at_ms)
        return event

    def _gemini_model_name(self, model: str, platform: str) -> str:
        # The Gemini API also accepts and echoes resource names such as "models/gemini-2.5-flash".
        if platform == "api" and self._rng.random() < MODELS_PREFIX_SHARE:
            return f"models/{model}"
        return model

    # Veo and Imagen ---------------------------------------------------------------------

    def _veo_generate_video(self, at_ms: int, user: User, limit: int) -> list[Event]:
        rng = self._rng
        model = "veo-3.0-generate-001" if rng.random() < 0.65 else "veo-3.0-fast-generate-001"
        platform = "vertex" if rng.random() < 0.4 else "api"
        seconds = pick(rng, ((8, 0.6), (6, 0.2), (4, 0.2)))
        audio = rng.random() < 0.75

        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_video",
            model=model,
            platform=platform,
            service="VeoService",
            tool_name="VEO Avatars" if rng.random() < 0.7 else "Ad Creator",
        )
        # Veo runs as a long-running operation, and its name is the only response id.
        event["request_id"] = f"models/{model}/operations/{random_text(rng, 12).lower()}"
        event["units"] = seconds
        event["unit_type"] = "video_seconds"
        if rng.random() < 0.7:
            event["cost_usd"] = self._estimate(seconds * _VEO_ESTIMATE_PER_SECOND[(model, audio)])
        resolution = "720p" if rng.random() < 0.65 else "1080p"
        event["attributes"] = {"resolution": resolution, "audio": audio}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _avatar_generate_image(self, at_ms: int, user: User, limit: int) -> list[Event]:
        rng = self._rng
        images = pick(rng, ((1, 0.4), (2, 0.2), (4, 0.4)))
        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_avatar_image",
            model="imagen-4.0-generate-001",
            platform="vertex" if rng.random() < 0.5 else "api",
            service="AvatarService",
            tool_name="VEO Avatars",
        )
        # Imagen's predict response carries no response id, so the event has no request_id.
        event["units"] = images
        event["unit_type"] = "images"
        if rng.random() < 0.7:
            event["cost_usd"] = self._estimate(images * _IMAGEN_ESTIMATE_PER_IMAGE)
        event["attributes"] = {"aspect_ratio": rng.choice(("1:1", "9:16", "3:4"))}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _estimate(self, list_cost: float) -> float:
        # One estimate in five drifts by up to 10%, as stale rates or rounding in the app would.
        if self._rng.random() < 0.2:
            list_cost *= self._rng.uniform(0.9, 1.1)
        return round(list_cost, 6)

    # OpenAI embeddings ------------------------------------------------------------------

    def _doc_embed(self, at_ms: int, user: User, limit: int) -> list[Event]:
        event = self._embedding_event(at_ms, user, "embed")
        event["request_id"] = f"req_{self._rng.getrandbits(128):032x}"
        input_tokens = lognormal_int(self._rng, 1800, 1.0, 5, 300_000)
        event["usage"] = openai_embedding_usage(input_tokens)
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _doc_embed_batch(self, at_ms: int, user: User, limit: int) -> list[Event]:
        event = self._embedding_event(at_ms, user, "embed_batch")
        event["request_id"] = f"batch_{self._rng.getrandbits(128):032x}"
        event["service_tier"] = "batch"
        input_tokens = lognormal_int(self._rng, 400_000, 0.8, 10_000, 20_000_000)
        event["usage"] = openai_embedding_usage(input_tokens)
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _embedding_event(self, at_ms: int, user: User, operation: str) -> Event:
        return self._event(
            at_ms,
            user,
            provider="openai",
            operation=operation,
            model="text-embedding-3-small",
            platform="api",
            service="DocService",
            tool_name="Knowledge Base",
        )

    # PydanticAI agent runs --------------------------------------------------------------

    def _agent_run(self, agent: str, at_ms: int, user: User, limit: int) -> list[Event]:
        """Build one event per model request of a run, whose history grows with every request."""
        rng = self._rng
        profile = AGENTS[agent]
        run = _AgentRun(
            agent=agent,
            profile=profile,
            model=pick(rng, profile.models),
            run_id=random_uuid(rng),
            user=user,
            # PydanticAI reports canonical counts, and some runs log those instead of the payload.
            canonical=rng.random() < 0.4,
            cache_ttl_1h=rng.random() < 0.3,
        )
        prefix = lognormal_int(rng, profile.prefix_tokens, 0.3, 200, 50_000)
        user_request = lognormal_int(rng, 150, 0.8, 5, 5000)
        history = prefix + user_request
        previous_input = 0
        moment_ms = at_ms

        events = []
        for step in range(min(rng.randint(*profile.requests), limit)):
            output = lognormal_int(rng, profile.output_tokens, 0.6, 1, 16_000)
            reasoning = lognormal_int(rng, 600, 0.8, 1, 24_576) if profile.thinks else 0
            tokens = Tokens(input=history, output=output + reasoning, reasoning=reasoning)
            tokens = self._agent_caching(run, step, prefix, previous_input, tokens)
            events.append(self._agent_event(run, step, moment_ms, tokens))

            previous_input = history
            history += output + lognormal_int(rng, profile.step_tokens, 0.8, 10, 60_000)
            # Time to generate the output at about 80 tokens per second, then run the tools.
            moment_ms += int((output + reasoning) / 80 * 1000) + rng.randint(300, 6000)
        return events

    def _agent_event(self, run: _AgentRun, step: int, at_ms: int, tokens: Tokens) -> Event:
        provider = run.profile.provider
        event = self._event(
            at_ms,
            run.user,
            provider=provider,
            operation="agent_run",
            model=run.model,
            platform="api",
            service="PydanticAI",
            tool_name=run.agent,
        )
        event["request_id"] = self._agent_request_id(provider)
        event["run_id"] = run.run_id
        if provider == "anthropic":
            event["service_tier"] = "standard"
        if provider == "openai" and self._rng.random() < 0.01:
            event["attributes"] = {"stream": True}  # the stream ended before its usage chunk
        elif run.canonical:
            event.update(canonical_counts(tokens))
        else:
            event["usage"] = self._agent_usage(provider, tokens, cache_ttl_1h=run.cache_ttl_1h)
        event["metadata"] = self._metadata(at_ms)
        event["metadata"]["agent_step"] = step + 1
        return event

    def _agent_caching(
        self, run: _AgentRun, step: int, prefix: int, previous_input: int, tokens: Tokens
    ) -> Tokens:
        """Apply each provider's prompt caching to a request of an agent run."""
        rng = self._rng
        provider = run.profile.provider
        if provider == "anthropic":
            # The run marks its prefix for caching. The first request writes it, unless an earlier
            # run's one-hour entry is still live, and later requests read it.
            if step == 0 and not (run.cache_ttl_1h and rng.random() < 0.6):
                return tokens._replace(cache_write=prefix)
            return tokens._replace(cached=prefix)
        if provider == "openai":
            # Automatic caching hits prompts of 1024 tokens or more, in steps of 128 tokens.
            if previous_input >= 1024 and rng.random() < 0.8:
                return tokens._replace(cached=1024 + (previous_input - 1024) // 128 * 128)
            return tokens
        if previous_input >= 1024 and rng.random() < 0.6:
            return tokens._replace(cached=int(previous_input * rng.uniform(0.5, 0.95)))
        return tokens

    def _agent_usage(self, provider: str, tokens: Tokens, *, cache_ttl_1h: bool) -> Event:
        if provider == "anthropic":
            cache_write_1h = tokens.cache_write if cache_ttl_1h else 0
            return anthropic_usage(tokens, cache_write_1h=cache_write_1h)
        if provider == "openai":
            return openai_chat_usage(tokens)
        return gemini_usage_metadata(tokens)

    def _agent_request_id(self, provider: str) -> str:
        if provider == "anthropic":
            return f"msg_01{random_text(self._rng, 22)}"
        if provider == "openai":
            return f"chatcmpl-{random_text(self._rng, 29)}"
        return self._gemini_response_id()
