"""The job that runs the whole graph for one month, or for a range of months in one run.

It lives in its own module because three things build on it — the `Definitions`, the
schedule and the sensor — and the schedule needs the job object itself, not only its name.
"""

from dagster import AssetSelection, define_asset_job

MEDALLION_JOB_NAME = "medallion_monthly"

medallion_job = define_asset_job(
    MEDALLION_JOB_NAME,
    selection=AssetSelection.all(),
    description="Bronze, silver and gold for one month (or a range of months in one run).",
)
