"""Warehouse writers: each engine hides behind the `Warehouse` interface in `base`."""

from __future__ import annotations

from ingest.config import Settings
from ingest.warehouse.base import Warehouse


def open_warehouse(settings: Settings) -> Warehouse:
    """Open the warehouse of the configured target, migrated and without unfinished batches."""
    if settings.target == "duckdb":
        from ingest.warehouse.duckdb import DuckDBWarehouse

        warehouse: Warehouse = DuckDBWarehouse(settings.duckdb_path)
    elif settings.target == "postgres":
        from ingest.warehouse.postgres import PostgresWarehouse

        warehouse = PostgresWarehouse(settings.postgres_dsn)
    elif settings.target == "spark":
        from ingest.warehouse.spark import SparkWarehouse

        warehouse = SparkWarehouse(settings)
    else:
        raise ValueError(f"unsupported target {settings.target!r}; use duckdb, postgres or spark")
    warehouse.apply_migrations()
    warehouse.remove_unfinished_batches()
    return warehouse
