"""Build canonical usage event fields from provider responses, without importing any SDK.

Each adapter is a pure function. It takes a response as a plain dict (the JSON body) or as an
SDK object. It returns the provider-specific fields of one canonical event: provider, operation,
model, platform, request_id, service_tier and the provider's own ``usage`` payload, plus units,
unit_type and attributes for images and video. The tracker adds the ids, the time and
the tracking context. Fields of SDK objects are read as attributes, and a usage object is
converted with its ``model_dump()`` when it has one. Both camelCase (REST) and snake_case (SDK)
names are accepted.

An adapter raises ValueError or TypeError when a response lacks what it needs. The tracker
catches those, so they never reach the app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

UNIT_TYPE_IMAGES = "images"
UNIT_TYPE_VIDEO_SECONDS = "video_seconds"

OPERATION_GENERATE_TEXT = "generate_text"
OPERATION_GENERATE_IMAGE = "generate_image"
OPERATION_GENERATE_VIDEO = "generate_video"
OPERATION_EMBED = "embed"

_MISSING = object()
# Veo operation names: models/<model>/operations/<id> on the Gemini API, and
# projects/<p>/locations/<l>/publishers/google/models/<model>/operations/<id> on Vertex AI.
_OPERATION_MODEL = re.compile(r"(?:^|/)models/(?P<model>[^/]+)/operations/")
_CAMEL_BOUNDARY = re.compile(r"_([a-z0-9])")


def openai_event_fields(
    response: Any, *, operation: str | None = None, model: str | None = None, platform: str = "api"
) -> dict[str, Any]:
    """Build event fields from an OpenAI chat completion, Responses, embeddings or images response.

    ``model`` is used only when the response names none (images responses do not). Without
    ``operation`` it is inferred: ``embed`` for embeddings, ``generate_image`` for images
    (counted as units ``images``), else ``generate_text``.
    """
    usage = _plain_usage(_field(response, "usage"))
    images = _count_openai_images(response)
    fields: dict[str, Any] = {
        "provider": "openai",
        "operation": operation or _infer_openai_operation(response, usage, images),
        "model": _string_field(response, "model") or model,
        "platform": platform,
        "request_id": _string_field(response, "id"),
        "service_tier": _string_field(response, "service_tier"),
        "usage": usage,
    }
    if images:
        fields["units"] = images
        fields["unit_type"] = UNIT_TYPE_IMAGES
    return _without_none(fields)


def anthropic_event_fields(
    response: Any, *, operation: str | None = None, model: str | None = None, platform: str = "api"
) -> dict[str, Any]:
    """Build event fields from an Anthropic Messages response (id, model, usage).

    The service tier is read from ``usage.service_tier``, where Anthropic reports it.
    """
    usage = _plain_usage(_field(response, "usage"))
    service_tier = usage.get("service_tier") if isinstance(usage, Mapping) else None
    fields = {
        "provider": "anthropic",
        "operation": operation or OPERATION_GENERATE_TEXT,
        "model": _string_field(response, "model") or model,
        "platform": platform,
        "request_id": _string_field(response, "id"),
        "service_tier": service_tier if isinstance(service_tier, str) else None,
        "usage": usage,
    }
    return _without_none(fields)


def gemini_event_fields(
    response: Any, *, operation: str | None = None, model: str | None = None, platform: str = "api"
) -> dict[str, Any]:
    """Build event fields from a Gemini ``generateContent`` (or ``embedContent``) response.

    The model is the response's ``modelVersion``, else ``model``. Inline image parts of the
    candidates are counted as units ``images``, and without ``operation`` such a response is
    ``generate_image``, any other ``generate_text``.
    """
    usage = _plain_usage(_field(response, "usageMetadata", "usage_metadata"))
    if isinstance(usage, Mapping):
        usage = _camel_case_keys(usage)
    images = _count_gemini_inline_images(response)
    fields: dict[str, Any] = {
        "provider": "google",
        "operation": operation or (OPERATION_GENERATE_IMAGE if images else OPERATION_GENERATE_TEXT),
        "model": _string_field(response, "modelVersion", "model_version") or model,
        "platform": platform,
        "request_id": _string_field(response, "responseId", "response_id"),
        "usage": usage,
    }
    if images:
        fields["units"] = images
        fields["unit_type"] = UNIT_TYPE_IMAGES
    return _without_none(fields)


def veo_event_fields(
    request: Any,
    operation_result: Any,
    *,
    operation: str | None = None,
    model: str | None = None,
    platform: str = "api",
) -> dict[str, Any]:
    """Build event fields from a Veo request and its finished long-running operation.

    Units are ``video_seconds``: the request's ``durationSeconds`` times the number of videos
    the operation returned (0 when every video was filtered or the operation failed). The
    request may be the REST body (settings under ``parameters``), an SDK-style call with a
    ``config``, or the settings themselves. ``resolution`` and ``generateAudio`` become the
    attributes ``resolution`` and ``audio`` when the request sets them. Veo reports no tokens,
    so the event has no usage. Raise ValueError while the operation is not done, because the
    number of videos is not known yet.
    """
    settings = _veo_settings(request)
    done = _field(operation_result, "done")
    if done is not True:
        raise ValueError(f"Veo operation {_string_field(operation_result, 'name')!r} is not done (done={done!r}); "
                         "track it after polling has finished")

    operation_name = _string_field(operation_result, "name")
    duration = _number(_field_of(settings, "durationSeconds", "duration_seconds"))
    attributes = _without_none(
        {
            "resolution": _as_string(_field_of(settings, "resolution")),
            "audio": _boolean(_field_of(settings, "generateAudio", "generate_audio")),
        }
    )
    fields: dict[str, Any] = {
        "provider": "google",
        "operation": operation or OPERATION_GENERATE_VIDEO,
        "model": _string_field(request, "model") or model or _model_from_operation_name(operation_name),
        "platform": platform,
        # Veo runs as a long-running operation, and its name is the only response id.
        "request_id": operation_name,
        "attributes": attributes or None,
    }
    # NOTE: without durationSeconds the length is unknown, so the event carries no units and
    # the warehouse counts it as unmetered rather than guessing the model's default length.
    if duration is not None:
        fields["units"] = _whole_if_integral(duration * _count_veo_videos(operation_result))
        fields["unit_type"] = UNIT_TYPE_VIDEO_SECONDS
    return _without_none(fields)


def imagen_event_fields(
    response: Any, *, operation: str | None = None, model: str | None = None, platform: str = "api"
) -> dict[str, Any]:
    """Build event fields from an Imagen ``predict`` response: units are the images returned.

    Imagen's response names neither the model nor a response id, so pass ``model``. Predictions
    that carry only a filter reason and no image are not counted.
    """
    fields = {
        "provider": "google",
        "operation": operation or OPERATION_GENERATE_IMAGE,
        "model": model,
        "platform": platform,
        "units": _count_imagen_images(response),
        "unit_type": UNIT_TYPE_IMAGES,
    }
    return _without_none(fields)


def to_plain(value: Any) -> Any:
    """Convert an SDK object, mapping or sequence into plain JSON values.

    Pydantic-style objects are converted with ``model_dump(mode="json", by_alias=True,
    exclude_none=True)``, so the keys are the wire names. Other objects are read through their
    public attributes. Raise TypeError for a value that has neither.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [to_plain(item) for item in value]

    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        try:
            dumped = model_dump(mode="json", by_alias=True, exclude_none=True)
        except TypeError:
            dumped = model_dump()
        return to_plain(dumped)
    if hasattr(value, "__dict__"):
        return {name: to_plain(item) for name, item in vars(value).items() if not name.startswith("_")}
    raise TypeError(f"cannot convert a {type(value).__name__} into JSON")


# --- reading fields --------------------------------------------------------------------------


def _field(source: Any, *names: str) -> Any:
    """Return the first of ``names`` that ``source`` has, as a key or an attribute, else None."""
    for name in names:
        if isinstance(source, Mapping):
            if name in source:
                return source[name]
        elif source is not None:
            value = getattr(source, name, _MISSING)
            if value is not _MISSING:
                return value
    return None


def _field_of(sources: Sequence[Any], *names: str) -> Any:
    """Return the first value of ``names`` found in any of ``sources``, in order."""
    for source in sources:
        value = _field(source, *names)
        if value is not None:
            return value
    return None


def _string_field(source: Any, *names: str) -> str | None:
    return _as_string(_field(source, *names))


def _as_string(value: Any) -> str | None:
    """Return a non-blank string (or the value of a string enum), else None."""
    if isinstance(value, Enum):
        value = value.value
    return value if isinstance(value, str) and value.strip() else None


def _items(value: Any) -> list[Any]:
    """Return a list field as a list; a missing or non-list value is an empty list."""
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return []
    if isinstance(value, Sequence):
        return list(value)
    return []


def _plain_usage(usage: Any) -> Any:
    return None if usage is None else to_plain(usage)


def _camel_case_keys(value: Any) -> Any:
    """Rename snake_case keys to camelCase, because ingest reads Gemini usage by its REST names."""
    if isinstance(value, Mapping):
        return {_CAMEL_BOUNDARY.sub(lambda match: match.group(1).upper(), key): _camel_case_keys(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_case_keys(item) for item in value]
    return value


def _number(value: Any) -> float | int | None:
    """Read a number that may arrive as a string (``"8"``), or return None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return None
    return None


def _boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _whole_if_integral(value: float | int) -> float | int:
    return int(value) if float(value).is_integer() else value


def _without_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


# --- per provider ----------------------------------------------------------------------------


def _infer_openai_operation(response: Any, usage: Any, images: int) -> str:
    object_type = _string_field(response, "object")
    data = _items(_field(response, "data"))
    if object_type == "list" and data and _string_field(data[0], "object") == "embedding":
        return OPERATION_EMBED
    if isinstance(usage, Mapping) and "prompt_tokens" in usage and "completion_tokens" not in usage:
        return OPERATION_EMBED
    if images:
        return OPERATION_GENERATE_IMAGE
    input_details = usage.get("input_tokens_details") if isinstance(usage, Mapping) else None
    if isinstance(input_details, Mapping) and "image_tokens" in input_details:
        return OPERATION_GENERATE_IMAGE
    return OPERATION_GENERATE_TEXT


def _count_openai_images(response: Any) -> int:
    """Count the images of an images API response (``data`` items with ``b64_json`` or ``url``)."""
    if _string_field(response, "object") is not None:
        return 0  # chat, Responses and embeddings responses all name their object type
    return sum(
        1 for item in _items(_field(response, "data")) if _field(item, "b64_json", "url") is not None
    )


def _count_gemini_inline_images(response: Any) -> int:
    images = 0
    for candidate in _items(_field(response, "candidates")):
        content = _field(candidate, "content")
        for part in _items(_field(content, "parts")):
            inline_data = _field(part, "inlineData", "inline_data")
            mime_type = _string_field(inline_data, "mimeType", "mime_type")
            if mime_type is not None and mime_type.startswith("image/"):
                images += 1
    return images


def _veo_settings(request: Any) -> list[Any]:
    """Return where a Veo request may keep its settings, most specific first."""
    return [
        _field(request, "parameters"),
        _field(request, "config"),
        request,
    ]


def _count_veo_videos(operation_result: Any) -> int:
    """Count the videos of a finished Veo operation, in the Gemini API, Vertex AI or SDK shape."""
    response = _field(operation_result, "response", "result")
    generate_video_response = _field(response, "generateVideoResponse", "generate_video_response")
    videos = _field_of(
        [generate_video_response, response],
        "generatedSamples",
        "generated_samples",
        "generatedVideos",
        "generated_videos",
        "videos",
    )
    return len(_items(videos))


def _model_from_operation_name(name: str | None) -> str | None:
    if name is None:
        return None
    match = _OPERATION_MODEL.search(name)
    return None if match is None else match.group("model")


def _count_imagen_images(response: Any) -> int:
    images = 0
    for prediction in _items(_field(response, "predictions", "generatedImages", "generated_images")):
        # REST predictions carry the image itself; SDK GeneratedImage objects wrap it in `image`.
        image = _field(prediction, "bytesBase64Encoded", "bytes_base64_encoded", "gcsUri", "gcs_uri", "image")
        if image is not None:
            images += 1
    return images
