"""PostgreSQL migrations of the raw tables, applied in file name order."""
