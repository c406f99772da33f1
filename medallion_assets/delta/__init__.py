"""Storage: the Delta log and commits of the warehouse tables, through delta-rs (no Dagster, no
Spark)."""
