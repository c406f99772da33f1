"""Storage: the Delta log (`log`, the only reader of it) and commits (`commit`) of the warehouse
tables, through delta-rs and pyarrow (no Spark, no Dagster API)."""
