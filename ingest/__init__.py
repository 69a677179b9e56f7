"""Ingest and command line for usage-warehouse: land AI usage events, price them with dbt, report."""

__version__ = "0.1.0"
