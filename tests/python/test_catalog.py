"""Tests for resolving event models to the genai-prices 0.2.3 catalog (ingest/catalog.py).

The resolver runs against the real catalog bundled with genai-prices, so a catalog upgrade that
renames a model id makes these tests fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.catalog import ModelResolution, ModelResolver, load_deployments
from ingest.events import normalize_model_name, parse_event


@pytest.fixture(scope="module")
def resolver() -> ModelResolver:
    return ModelResolver()


@pytest.mark.parametrize(
    ("provider", "platform", "model_name", "expected"),
    [
        pytest.param(
            "google", "api", normalize_model_name("models/gemini-2.0-flash"),
            ModelResolution("google", "google", "gemini-2.0-flash", "matched"),
            id="gemini-sdk-name-on-api",
        ),
        pytest.param(
            "openai", "api", "gpt-4o-2024-05-13",
            ModelResolution("openai", "openai", "gpt-4o-2024-05-13", "matched"),
            id="dated-snapshot-own-id",
        ),
        pytest.param(
            "openai", "api", "gpt-4o-2024-11-20",
            ModelResolution("openai", "openai", "gpt-4o", "matched"),
            id="dated-snapshot-alias",
        ),
        pytest.param(
            "google", "vertex", "gemini-2.5-pro",
            ModelResolution("google", "google", "gemini-2.5-pro", "matched"),
            id="vertex-to-google",
        ),
        pytest.param(
            "anthropic", "vertex", "claude-3-5-sonnet-v2@20241022",
            ModelResolution("google", "google", "claude-3-5-sonnet", "matched"),
            id="claude-on-vertex",
        ),
        pytest.param(
            "openai", "azure", "gpt-4o",
            ModelResolution("azure", "openai", "gpt-4o", "matched"),
            id="azure-falls-back-to-openai",
        ),
        pytest.param(
            "anthropic", "bedrock", "anthropic.claude-sonnet-4-20250514-v1:0",
            ModelResolution("aws", "aws", "regional.anthropic.claude-sonnet-4-20250514-v1:0", "matched"),
            id="bedrock-model-id",
        ),
        pytest.param(
            "aws", "bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            ModelResolution("aws", "aws", "regional.anthropic.claude-3-5-sonnet-20241022-v2:0", "matched"),
            id="bedrock-inference-profile",
        ),
        pytest.param(
            "openai", "openrouter", "openai/gpt-4o",
            ModelResolution("openrouter", "openrouter", "openai/gpt-4o", "matched"),
            id="openrouter-slug",
        ),
        pytest.param(
            "x-ai", "api", "grok-3",
            ModelResolution("x-ai", "x-ai", "grok-3", "matched"),
            id="x-ai-alias-target",
        ),
        pytest.param(
            "openai", "api", "gpt-nonexistent-9",
            ModelResolution("openai", None, None, "unknown_model"),
            id="unknown-model",
        ),
        pytest.param(
            "openai", "bedrock", "gpt-4o",
            ModelResolution("aws", None, None, "unknown_model"),
            id="model-not-on-platform",
        ),
        pytest.param(
            "acme-ai", "api", "acme-large",
            ModelResolution(None, None, None, "unknown_provider"),
            id="unknown-provider",
        ),
        pytest.param(
            "acme-ai", "api", None,
            ModelResolution(None, None, None, "unknown_provider"),
            id="unknown-provider-no-model",
        ),
        pytest.param(
            "openai", "api", None,
            ModelResolution("openai", None, None, "no_model"),
            id="no-model",
        ),
    ],
)
def test_resolve_catalog_models(
    resolver: ModelResolver, provider: str, platform: str, model_name: str | None, expected: ModelResolution
) -> None:
    assert resolver.resolve(provider, platform, model_name) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"provider": "Gemini", "model": "models/gemini-2.0-flash"},
            ModelResolution("google", "google", "gemini-2.0-flash", "matched"),
            id="gemini-sdk-prefix",
        ),
        pytest.param(
            {"provider": "vertex", "model": "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro"},
            ModelResolution("google", "google", "gemini-2.5-pro", "matched"),
            id="vertex-resource-path",
        ),
        pytest.param(
            {"provider": "azure-openai", "model": "GPT-4o"},
            ModelResolution("azure", "openai", "gpt-4o", "matched"),
            id="azure-openai-upper-case",
        ),
        pytest.param(
            {"provider": "bedrock", "model": "anthropic.claude-3-haiku-20240307-v1:0"},
            ModelResolution("aws", "aws", "regional.anthropic.claude-3-haiku-20240307-v1:0", "matched"),
            id="bedrock-provider-alias",
        ),
    ],
)
def test_resolve_parsed_event(resolver: ModelResolver, fields: dict[str, str], expected: ModelResolution) -> None:
    event = parse_event({"event_id": "e1", "created_at": "2025-09-03T10:00:00Z", "operation": "chat", **fields})

    assert resolver.resolve(event.provider, event.platform, event.model_name) == expected


@pytest.fixture()
def deployments_seed(tmp_path: Path) -> Path:
    path = tmp_path / "deployments.csv"
    path.write_text(
        "platform,deployment,model\n"
        "azure,gpt-4o-baseline,gpt-4o-2024-11-20\n"
        " Azure , Mini-Prod ,gpt-4o-mini \n"
        "azure,retired-deployment,gpt-nonexistent-9\n"
    )
    return path


def test_load_deployments_normalizes_keys(deployments_seed: Path) -> None:
    assert load_deployments(deployments_seed) == {
        ("azure", "gpt-4o-baseline"): "gpt-4o-2024-11-20",
        ("azure", "mini-prod"): "gpt-4o-mini",
        ("azure", "retired-deployment"): "gpt-nonexistent-9",
    }


def test_load_deployments_missing_file(tmp_path: Path) -> None:
    assert load_deployments(tmp_path / "absent.csv") == {}


@pytest.mark.parametrize(
    ("provider", "platform", "model_name", "expected"),
    [
        pytest.param(
            "openai", "azure", "gpt-4o-baseline",
            ModelResolution("azure", "openai", "gpt-4o", "deployment"),
            id="deployment-to-dated-model",
        ),
        pytest.param(
            "openai", "azure", normalize_model_name("Mini-Prod"),
            ModelResolution("azure", "openai", "gpt-4o-mini", "deployment"),
            id="deployment-name-case",
        ),
        pytest.param(
            "openai", "azure", "retired-deployment",
            ModelResolution("azure", None, None, "unknown_model"),
            id="deployment-to-unknown-model",
        ),
        pytest.param(
            "openai", "api", "gpt-4o-baseline",
            ModelResolution("openai", None, None, "unknown_model"),
            id="deployment-only-on-its-platform",
        ),
        pytest.param(
            "openai", "azure", "gpt-4o",
            ModelResolution("azure", "openai", "gpt-4o", "matched"),
            id="model-name-not-a-deployment",
        ),
    ],
)
def test_resolve_deployments(
    deployments_seed: Path, provider: str, platform: str, model_name: str | None, expected: ModelResolution
) -> None:
    resolver = ModelResolver(load_deployments(deployments_seed))

    assert resolver.resolve(provider, platform, model_name) == expected


def test_resolve_caches_result() -> None:
    resolver = ModelResolver()

    first = resolver.resolve("openai", "api", "gpt-4o")

    assert resolver.resolve("openai", "api", "gpt-4o") is first


def test_resolve_cache_keeps_keys_apart() -> None:
    resolver = ModelResolver()

    on_api = resolver.resolve("openai", "api", "gpt-4o")
    on_azure = resolver.resolve("openai", "azure", "gpt-4o")

    assert on_api.catalog_provider_id == "openai"
    assert on_azure.catalog_provider_id == "azure"
