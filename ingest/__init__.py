"""Ingest and command line for usage-warehouse: land AI usage events, price them with dbt, report."""

import warnings

__version__ = "0.1.0"

# pyspark (the spark target) warns on import that it does not fully support pandas 3, which
# Great Expectations brings. No code here hands pandas data to Spark, so the warning is dropped.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
