"""Resolve the model an event names to a model of the genai-prices catalog.

Resolution uses genai-prices' own matcher, so the prefixes, dated snapshots and aliases it
recognizes resolve the way its `calc_price` would. The platform picks the catalog provider, and a seed maps
deployment names (Azure deployments and the like) to the models behind them. The result is stored
on each raw event, and the price seeds are joined on it in SQL.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from genai_prices import data_snapshot

# The catalog provider that prices a call made through each platform. For `api`, the provider's
# own price list is used.
PLATFORM_CATALOG_PROVIDERS = {
    "vertex": "google",
    "azure": "azure",
    "bedrock": "aws",
    "openrouter": "openrouter",
}


@dataclass(frozen=True)
class ModelResolution:
    """Source of an event's prices.

    `catalog_provider_id` is the catalog provider of the call's platform. `price_provider_id` is
    the provider whose model list contains the model; the two differ when the catalog falls back,
    as Azure does to OpenAI's list. `status` is matched, deployment, unknown_model,
    unknown_provider or no_model.
    """

    catalog_provider_id: str | None
    price_provider_id: str | None
    catalog_model_id: str | None
    status: str


class ModelResolver:
    """Resolve (provider, platform, model name) triples, caching each resolution."""

    def __init__(self, deployments: Mapping[tuple[str, str], str] | None = None) -> None:
        self._deployments = dict(deployments or {})
        self._cache: dict[tuple[str, str, str | None], ModelResolution] = {}

    def resolve(self, provider: str, platform: str, model_name: str | None) -> ModelResolution:
        key = (provider, platform, model_name)
        resolution = self._cache.get(key)
        if resolution is None:
            resolution = self._resolve(provider, platform, model_name)
            self._cache[key] = resolution
        return resolution

    def _resolve(self, provider: str, platform: str, model_name: str | None) -> ModelResolution:
        catalog_provider_id = _catalog_provider_id(provider, platform)
        if catalog_provider_id is None:
            return ModelResolution(None, None, None, "unknown_provider")
        if model_name is None:
            return ModelResolution(catalog_provider_id, None, None, "no_model")

        status = "matched"
        deployed_model = self._deployments.get((platform, model_name))
        if deployed_model is not None:
            model_name, status = deployed_model, "deployment"

        snapshot = data_snapshot.get_snapshot()
        try:
            provider_info, model_info = snapshot.find_provider_model(model_name, None, catalog_provider_id, None)
        except LookupError:
            return ModelResolution(catalog_provider_id, None, None, "unknown_model")
        return ModelResolution(
            catalog_provider_id=provider_info.id,
            price_provider_id=_model_owners()[id(model_info)],
            catalog_model_id=model_info.id,
            status=status,
        )


def load_deployments(path: Path) -> dict[tuple[str, str], str]:
    """Read the deployment seed: (platform, deployment name) -> model name."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {
            (row["platform"].strip().lower(), row["deployment"].strip().lower()): row["model"].strip()
            for row in csv.DictReader(handle)
        }


def _catalog_provider_id(provider: str, platform: str) -> str | None:
    provider_id = PLATFORM_CATALOG_PROVIDERS.get(platform, provider)
    found = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, provider_id)
    return found.id if found else None


@cache
def _model_owners() -> dict[int, str]:
    """Map each catalog ModelInfo object to the id of the provider whose list contains it."""
    return {
        id(model): provider.id
        for provider in data_snapshot.get_snapshot().providers
        for model in provider.models
    }
