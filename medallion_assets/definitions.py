"""The code location: every asset, resource and job of the project in one `Definitions`."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
    load_assets_from_modules,
)

from medallion_assets.assets import bronze, gold, silver
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.resources.spark import SparkSessionResource

spark = SparkSessionResource()

all_assets = load_assets_from_modules([bronze, silver, gold])

medallion_job = define_asset_job(
    "medallion_monthly",
    selection=AssetSelection.all(),
    description="Bronze, silver and gold for one month (or a range of months in one run).",
)

defs = Definitions(
    assets=all_assets,
    jobs=[medallion_job],
    resources={
        "spark": spark,
        "landing": LandingDirectory(),
        "io_manager": SparkDeltaIOManager(spark=spark),
    },
    # One process per run: the run's steps share one Spark session (one JVM), like a job cluster.
    executor=in_process_executor,
)
