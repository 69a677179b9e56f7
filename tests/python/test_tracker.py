"""Tests of the usage tracker: adapters on real provider bodies, the spool, and never raising."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.events import UsageEvent, parse_event, parse_json_line
from ingest.tracker import (
    Tracker,
    TrackingContext,
    current_context,
    gemini_event_fields,
    imagen_event_fields,
    openai_event_fields,
    use_context,
    veo_event_fields,
)
from ingest.tracker import spool as spool_module
from conftest import PROJECT_DIR, shared_file

CONTEXT = TrackingContext(
    user_id="user-1", organization_id="org-1", tool_name="Ad Creator", service="GeminiService", run_id="run-1"
)


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def closed_segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.jsonl"))


def open_segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.jsonl.open"))


def read_events(spool_dir: Path) -> list[UsageEvent]:
    """Parse every line of every closed segment with the warehouse's own event parser."""
    events = []
    for path in closed_segments(spool_dir):
        for line in path.read_text(encoding="utf-8").splitlines():
            events.append(parse_event(parse_json_line(line)))
    return events


def read_records(spool_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in closed_segments(spool_dir)
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


# --- import weight -----------------------------------------------------------------------------


def test_import_loads_no_heavy_library() -> None:
    script = (
        "import json, sys\n"
        "import ingest.tracker\n"
        "heavy = {'duckdb', 'pyarrow', 'dbt', 'great_expectations', 'pandas'}\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in heavy)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_DIR, check=True
    )

    assert json.loads(completed.stdout) == []


# --- adapters on real provider bodies ----------------------------------------------------------

# Which adapter reads the bodies that a genai-prices extractor reads, and the usage shape that
# extractor is compared on. OpenAI's Responses extractor and Anthropic's both accept any body with
# input_tokens and output_tokens, so a body is compared only under the flavor of its own shape.
EXTRACTOR_ADAPTERS = {
    ("openai", "chat"): ("openai", "openai-chat"),
    ("openai", "responses"): ("openai", "openai-responses"),
    ("openai", "embeddings"): ("openai", "openai-embeddings"),
    ("google", "default"): ("gemini", "gemini"),
    ("anthropic", "default"): ("anthropic", "anthropic"),
}
# Bodies checked per adapter: 325 chat, 211 Responses and 3 embeddings bodies for OpenAI.
EXPECTED_CHECKED = {"openai": 539, "gemini": 342, "anthropic": 189}

GEMINI_KEYS = {"promptTokenCount", "candidatesTokenCount", "totalTokenCount", "cachedContentTokenCount"}
ANTHROPIC_KEYS = {"cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "server_tool_use"}


def usage_shape(body: Mapping[str, Any]) -> str:
    """Name the flavor of a body's usage object, or "either" when Responses and Anthropic both fit."""
    if "usageMetadata" in body:
        return "gemini"
    usage = body.get("usage") or {}
    if GEMINI_KEYS & usage.keys():
        return "gemini"
    if "inputTokens" in usage:
        return "bedrock-converse"
    if "prompt_tokens" in usage:
        return "openai-chat" if "completion_tokens" in usage else "openai-embeddings"
    if ANTHROPIC_KEYS & usage.keys():
        return "anthropic"
    output_details = usage.get("output_tokens_details") or {}
    if "thinking_tokens" in output_details:
        return "anthropic"
    if "input_tokens_details" in usage or "reasoning_tokens" in output_details:
        return "openai-responses"
    return "either"


def iter_adapter_cases(bodies: list[dict[str, Any]]) -> Iterator[tuple[int, str, dict[str, Any], dict[str, int]]]:
    """Yield (line number, adapter, body, expected genai-prices usage) for each comparable body."""
    for line_number, record in enumerate(bodies, start=1):
        body = record["body"]
        shape = usage_shape(body)
        for entry in record["extracted"]:
            for extractor in entry["extractors"]:
                key = (extractor["provider_id"], extractor["api_flavor"])
                if key not in EXTRACTOR_ADAPTERS:
                    continue
                adapter, flavor = EXTRACTOR_ADAPTERS[key]
                if shape in {flavor, "either"}:
                    yield line_number, adapter, body, entry["usage"]


def event_counts(event: UsageEvent) -> dict[str, Any]:
    return {
        "input_tokens": event.input_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "details": dict(event.usage_details or {}),
    }


def expected_counts(usage: Mapping[str, int]) -> dict[str, Any]:
    canonical = {"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "output_reasoning_tokens"}
    return {
        "input_tokens": usage.get("input_tokens", 0),
        "cached_input_tokens": usage.get("cache_read_tokens", 0),
        "cache_write_tokens": usage.get("cache_write_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "reasoning_tokens": usage.get("output_reasoning_tokens", 0),
        "details": {key: value for key, value in usage.items() if key not in canonical and value},
    }


@pytest.fixture(scope="module")
def recorded_bodies() -> list[dict[str, Any]]:
    with shared_file("data/provider_responses.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_adapters_on_recorded_bodies(recorded_bodies: list[dict[str, Any]], tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, segment_max_events=500)
    track = {
        "openai": tracker.track_openai,
        "gemini": tracker.track_gemini,
        "anthropic": tracker.track_anthropic,
    }
    expected: dict[str, tuple[int, str, dict[str, Any]]] = {}
    checked: Counter[str] = Counter()
    for line_number, adapter, body, usage in iter_adapter_cases(recorded_bodies):
        event_id = track[adapter](body, CONTEXT, operation="analyze_text")
        assert event_id is not None, f"line {line_number}: the {adapter} adapter failed"
        expected[event_id] = (line_number, adapter, expected_counts(usage))
        checked[adapter] += 1
    tracker.close()

    mismatches = []
    for event in read_events(tmp_path):
        line_number, adapter, counts = expected.pop(event.event_id)
        if event_counts(event) != counts:
            mismatches.append(f"line {line_number} ({adapter}): got {event_counts(event)}, expected {counts}")

    assert mismatches[:5] == []
    assert expected == {}
    assert dict(checked) == EXPECTED_CHECKED
    assert tracker.stats.failed == 0


def test_gemini_keeps_model_and_response_id(recorded_bodies: list[dict[str, Any]]) -> None:
    gemini_body = next(r["body"] for r in recorded_bodies if "modelVersion" in r["body"])
    fields = gemini_event_fields({**gemini_body, "responseId": "resp-1"})

    assert fields["provider"] == "google"
    assert fields["model"] == gemini_body["modelVersion"]
    assert fields["request_id"] == "resp-1"
    assert fields["usage"] == gemini_body["usageMetadata"]


# --- adapters on hand-written and SDK-like responses -------------------------------------------


def test_openai_chat_fields() -> None:
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }

    fields = openai_event_fields(response)

    assert fields == {
        "provider": "openai",
        "operation": "generate_text",
        "model": "gpt-4o-2024-08-06",
        "platform": "api",
        "request_id": "chatcmpl-1",
        "service_tier": "default",
        "usage": response["usage"],
    }


def test_openai_embeddings_operation() -> None:
    response = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }

    fields = openai_event_fields(response)

    assert fields["operation"] == "embed"
    assert "request_id" not in fields
    assert "units" not in fields


def test_openai_images_units(tmp_path: Path) -> None:
    response = {
        "created": 1_750_000_000,
        "data": [{"b64_json": "aGVsbG8="}, {"b64_json": "aGVsbG8="}],
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
            "output_tokens": 4160,
            "total_tokens": 4210,
        },
    }

    with Tracker(tmp_path) as tracker:
        tracker.track_openai(response, CONTEXT, model="gpt-image-1")
    [event] = read_events(tmp_path)

    assert event.operation == "generate_image"
    assert event.model == "gpt-image-1"
    assert event.units == 2
    assert event.unit_type == "images"
    assert event.input_tokens == 50
    assert event.output_tokens == 4160
    assert event.usage_details == {"input_text_tokens": 40, "input_image_tokens": 10}


class FakeSdkModel:
    """An object shaped like a pydantic SDK model: attributes plus model_dump()."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def model_dump(self, **arguments: Any) -> dict[str, Any]:
        return dict(vars(self))


def test_openai_sdk_object() -> None:
    usage = FakeSdkModel(input_tokens=30, output_tokens=9, output_tokens_details=FakeSdkModel(reasoning_tokens=4))
    response = FakeSdkModel(id="resp_1", object="response", model="o4-mini", usage=usage, service_tier="flex")

    fields = openai_event_fields(response)

    assert fields["request_id"] == "resp_1"
    assert fields["service_tier"] == "flex"
    assert fields["usage"] == {"input_tokens": 30, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}}


def test_gemini_snake_case_object(tmp_path: Path) -> None:
    # Attribute names as the Python SDK has them, with no model_dump().
    inline_image = SimpleNamespace(inline_data=SimpleNamespace(mime_type="image/png", data=b"\x89PNG"))
    text = SimpleNamespace(text="Here is your ad", inline_data=None)
    response = SimpleNamespace(
        response_id="abc123",
        model_version="gemini-2.5-flash-image",
        candidates=[SimpleNamespace(content=SimpleNamespace(parts=[text, inline_image]))],
        usage_metadata=SimpleNamespace(
            prompt_token_count=20,
            candidates_token_count=1300,
            total_token_count=1320,
            candidates_tokens_details=[SimpleNamespace(modality="IMAGE", token_count=1290)],
        ),
    )

    with Tracker(tmp_path) as tracker:
        tracker.track_gemini(response, CONTEXT, platform="vertex")
    [record] = read_records(tmp_path)
    [event] = read_events(tmp_path)

    assert record["usage"]["candidatesTokensDetails"] == [{"modality": "IMAGE", "tokenCount": 1290}]
    assert event.operation == "generate_image"
    assert event.platform == "vertex"
    assert event.request_id == "abc123"
    assert event.units == 1
    assert event.unit_type == "images"
    assert event.output_tokens == 1300
    assert event.usage_details == {"output_image_tokens": 1290}


def test_gemini_text_has_no_units() -> None:
    response = {
        "candidates": [{"content": {"parts": [{"text": "hello"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r-1",
    }

    fields = gemini_event_fields(response, model="ignored-when-the-response-names-one")

    assert fields["operation"] == "generate_text"
    assert fields["model"] == "gemini-2.5-flash"
    assert "units" not in fields


# Hand-written bodies shaped like the Gemini API's and Vertex AI's Veo and Imagen responses.
VEO_REQUEST = {
    "instances": [{"prompt": "A drone shot over a beach"}],
    "parameters": {"durationSeconds": 8, "resolution": "1080p", "generateAudio": True, "sampleCount": 2},
}
VEO_OPERATION_GEMINI_API = {
    "name": "models/veo-3.0-generate-001/operations/k3j2h1",
    "done": True,
    "response": {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
        "generateVideoResponse": {
            "generatedSamples": [
                {"video": {"uri": "https://example.invalid/v1/files/a:download?alt=media"}},
                {"video": {"uri": "https://example.invalid/v1/files/b:download?alt=media"}},
            ]
        },
    },
}
VEO_OPERATION_VERTEX = {
    "name": "projects/p1/locations/us-central1/publishers/google/models/veo-3.0-fast-generate-001/operations/0b1c",
    "done": True,
    "response": {
        "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
        "raiMediaFilteredCount": 0,
        "videos": [{"gcsUri": "gs://bucket/sample_0.mp4", "mimeType": "video/mp4"}],
    },
}


def test_veo_gemini_api_operation(tmp_path: Path) -> None:
    with Tracker(tmp_path) as tracker:
        tracker.track_veo(VEO_REQUEST, VEO_OPERATION_GEMINI_API, CONTEXT)
    [event] = read_events(tmp_path)

    assert event.operation == "generate_video"
    assert event.model == "veo-3.0-generate-001"
    assert event.request_id == VEO_OPERATION_GEMINI_API["name"]
    assert event.units == 16
    assert event.unit_type == "video_seconds"
    assert event.attributes == {"resolution": "1080p", "audio": True}
    assert event.input_tokens is None
    assert event.usage_payload is None


def test_veo_vertex_operation() -> None:
    request = {"parameters": {"durationSeconds": "6", "generateAudio": False}}

    fields = veo_event_fields(request, VEO_OPERATION_VERTEX, platform="vertex")

    assert fields["model"] == "veo-3.0-fast-generate-001"
    assert fields["units"] == 6
    assert fields["attributes"] == {"audio": False}


def test_veo_sdk_style_request() -> None:
    request = {"model": "veo-3.0-generate-001", "config": {"duration_seconds": 4, "resolution": "720p"}}
    operation = SimpleNamespace(
        name="models/veo-3.0-generate-001/operations/x9",
        done=True,
        response=SimpleNamespace(generated_videos=[SimpleNamespace(video=SimpleNamespace(uri="u"))]),
    )

    fields = veo_event_fields(request, operation)

    assert fields["units"] == 4
    assert fields["attributes"] == {"resolution": "720p"}


def test_veo_filtered_videos_zero_units() -> None:
    operation = {"name": "models/veo-3.0-generate-001/operations/f1", "done": True, "response": {"videos": []}}

    fields = veo_event_fields(VEO_REQUEST, operation)

    assert fields["units"] == 0


def test_veo_without_duration_is_unmetered() -> None:
    fields = veo_event_fields({"parameters": {}}, VEO_OPERATION_GEMINI_API)

    assert "units" not in fields
    assert "unit_type" not in fields


def test_veo_unfinished_operation_fails(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)

    event_id = tracker.track_veo(VEO_REQUEST, {"name": "models/veo-3.0-generate-001/operations/p", "done": False}, CONTEXT)

    assert event_id is None
    assert tracker.stats.failed == 1


def test_imagen_predict_response(tmp_path: Path) -> None:
    response = {
        "predictions": [
            {"bytesBase64Encoded": "aW1n", "mimeType": "image/png"},
            {"bytesBase64Encoded": "aW1n", "mimeType": "image/png"},
            {"raiFilteredReason": "filtered by the safety filter"},
        ]
    }

    with Tracker(tmp_path) as tracker:
        tracker.track_imagen(response, CONTEXT, model="imagen-4.0-generate-001", attributes={"aspect_ratio": "1:1"})
    [event] = read_events(tmp_path)

    assert event.provider == "google"
    assert event.operation == "generate_image"
    assert event.model == "imagen-4.0-generate-001"
    assert event.units == 2
    assert event.unit_type == "images"
    assert event.attributes == {"aspect_ratio": "1:1"}


def test_imagen_sdk_generated_images() -> None:
    response = SimpleNamespace(
        generated_images=[SimpleNamespace(image=SimpleNamespace(image_bytes=b"x")), SimpleNamespace(image=None)]
    )

    fields = imagen_event_fields(response, model="imagen-4.0-fast-generate-001")

    assert fields["units"] == 1


# --- context ------------------------------------------------------------------------------------


def test_event_carries_context_fields(tmp_path: Path) -> None:
    response = {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10, "output_tokens": 3}}

    with Tracker(tmp_path) as tracker:
        event_id = tracker.track_anthropic(response, CONTEXT, metadata={"app_version": "1.2.0"})
    [record] = read_records(tmp_path)
    [event] = read_events(tmp_path)

    assert event.event_id == event_id
    assert record["created_at"].endswith("Z")
    assert event.user_id == "user-1"
    assert event.organization_id == "org-1"
    assert event.tool_name == "Ad Creator"
    assert event.service == "GeminiService"
    assert event.run_id == "run-1"
    assert event.request_id == "msg_1"
    assert event.metadata == {"app_version": "1.2.0"}


def test_use_context_sets_current(tmp_path: Path) -> None:
    assert current_context() is None
    with Tracker(tmp_path) as tracker, use_context(CONTEXT):
        assert current_context() is CONTEXT
        tracker.record({"provider": "openai", "operation": "embed", "input_tokens": 5})
    assert current_context() is None
    [event] = read_events(tmp_path)

    assert event.organization_id == "org-1"
    assert event.input_tokens == 5


def test_record_explicit_fields_win(tmp_path: Path) -> None:
    with Tracker(tmp_path) as tracker:
        event_id = tracker.record(
            {"event_id": "mine-1", "provider": "openai", "operation": "embed", "user_id": "other-user"}, CONTEXT
        )
    [event] = read_events(tmp_path)

    assert event_id == "mine-1"
    assert event.event_id == "mine-1"
    assert event.user_id == "other-user"
    assert event.organization_id == "org-1"


# --- never raising and counters -----------------------------------------------------------------


class BrokenResponse:
    """A response whose every attribute read raises, like an SDK object in a bad state."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"attribute {name} is broken")


def test_broken_response_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(tmp_path)

    with caplog.at_level(logging.ERROR, logger="ingest.tracker"):
        event_id = tracker.track_gemini(BrokenResponse(), CONTEXT)
        recorded_id = tracker.record({"provider": "openai", "operation": "embed"}, CONTEXT)
    tracker.close()

    assert event_id is None
    assert recorded_id is not None
    assert tracker.stats.failed == 1
    assert tracker.stats.recorded == 1
    assert "attribute usageMetadata is broken" in caplog.text
    assert "org-1" in caplog.text


def test_missing_provider_fails(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)

    assert tracker.record({"operation": "embed"}) is None
    assert tracker.record({"provider": "openai", "operation": "embed", "cost_usd": object()}) is None
    assert tracker.stats.failed == 2
    assert tracker.stats.recorded == 0


def test_unwritable_spool_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A regular file where the spool folder should be: no process, root included, can write there.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    tracker = Tracker(blocker / "spool")

    with caplog.at_level(logging.ERROR, logger="ingest.tracker"):
        for _ in range(3):
            assert tracker.track_anthropic({"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {}}, CONTEXT) is None
        tracker.close()

    assert tracker.stats.failed == 3
    assert tracker.stats.recorded == 0
    # The first failure is logged and the next two fall within the failure log interval.
    failure_lines = [record for record in caplog.records if record.getMessage().startswith("Failed to record")]
    assert len(failure_lines) == 1
    assert "not-a-folder" in failure_lines[0].getMessage()


def test_write_error_keeps_complete_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = Tracker(tmp_path)
    tracker.record({"provider": "openai", "operation": "embed"})
    real_write = os.write

    def write_half_then_fail(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", write_half_then_fail)
    assert tracker.record({"provider": "openai", "operation": "embed"}) is None
    monkeypatch.undo()
    tracker.record({"provider": "openai", "operation": "embed"})
    tracker.close()

    assert tracker.stats.failed == 1
    assert tracker.stats.recorded == 2
    assert len(closed_segments(tmp_path)) == 2
    assert len(read_events(tmp_path)) == 2


# --- segments -----------------------------------------------------------------------------------


def test_rotation_by_event_count(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, segment_max_events=3)
    for index in range(7):
        tracker.record({"provider": "openai", "operation": "embed", "input_tokens": index})

    assert len(closed_segments(tmp_path)) == 2
    assert len(open_segments(tmp_path)) == 1

    tracker.close()

    assert len(closed_segments(tmp_path)) == 3
    assert open_segments(tmp_path) == []
    assert [event.input_tokens for event in read_events(tmp_path)] == list(range(7))


def test_rotation_by_time(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = Tracker(tmp_path, segment_max_seconds=30, clock=clock)
    tracker.record({"provider": "openai", "operation": "embed"})
    clock.now += 29
    tracker.record({"provider": "openai", "operation": "embed"})

    assert closed_segments(tmp_path) == []

    clock.now += 1
    tracker.record({"provider": "openai", "operation": "embed"})

    assert len(closed_segments(tmp_path)) == 1
    assert len(read_records(tmp_path)) == 2

    clock.now += 30
    tracker.rotate_if_due()

    assert len(closed_segments(tmp_path)) == 2
    assert open_segments(tmp_path) == []


def test_close_fsyncs_then_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", recording_fsync)
    tracker = Tracker(tmp_path)
    tracker.record({"provider": "openai", "operation": "embed"})
    [open_path] = open_segments(tmp_path)
    tracker.flush_segment()
    [closed_path] = closed_segments(tmp_path)

    assert synced == [str(open_path), str(tmp_path)]
    assert closed_path.name == open_path.name.removesuffix(".open")
    assert len(read_events(tmp_path)) == 1


def test_flush_without_events_writes_nothing(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    tracker.flush_segment()
    tracker.close()

    assert list(tmp_path.iterdir()) == []


def test_recovery_truncates_partial_line(tmp_path: Path) -> None:
    complete = [
        json.dumps({"event_id": f"e{index}", "created_at": "2026-01-05T10:00:00Z", "provider": "openai",
                    "operation": "embed"})
        for index in range(2)
    ]
    leftover = tmp_path / "20260105T100000000000Z-0123456789abcdef0123456789abcdef.jsonl.open"
    leftover.write_text("\n".join(complete) + '\n{"event_id": "e2", "created_')
    empty = tmp_path / "20260105T100001000000Z-fedcba9876543210fedcba9876543210.jsonl.open"
    empty.write_text('{"event_id": "e3"')

    tracker = Tracker(tmp_path)

    assert tracker.stats.recovered_segments == 2
    assert open_segments(tmp_path) == []
    [closed] = closed_segments(tmp_path)
    assert closed.name == leftover.name.removesuffix(".open")
    assert [event.event_id for event in read_events(tmp_path)] == ["e0", "e1"]


def test_recovery_skips_live_segment(tmp_path: Path) -> None:
    live = Tracker(tmp_path)
    live.record({"provider": "openai", "operation": "embed"})

    starting = Tracker(tmp_path)

    assert starting.stats.recovered_segments == 0
    assert len(open_segments(tmp_path)) == 1

    live.close()

    assert len(read_events(tmp_path)) == 1


def test_threads_record_every_event(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, segment_max_events=50)
    threads_count, events_per_thread = 8, 200

    def record_many(thread_index: int) -> None:
        for index in range(events_per_thread):
            tracker.track_openai(
                {"id": f"chatcmpl-{thread_index}-{index}", "object": "chat.completion", "model": "gpt-4o-mini",
                 "usage": {"prompt_tokens": index, "completion_tokens": 1}},
                CONTEXT,
            )

    threads = [threading.Thread(target=record_many, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker.close()
    events = read_events(tmp_path)

    assert tracker.stats.recorded == threads_count * events_per_thread
    assert tracker.stats.failed == 0
    assert len(events) == threads_count * events_per_thread
    assert len({event.event_id for event in events}) == len(events)
    assert len({event.request_id for event in events}) == len(events)
    assert len(closed_segments(tmp_path)) == threads_count * events_per_thread // 50
