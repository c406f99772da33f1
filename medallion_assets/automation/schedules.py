"""`medallion_monthly_schedule`: the whole graph for the month that has just ended.

Why it exists next to the sensor: when the month's export is known to be in place by a fixed time
(a nightly sync, a contract with the supplier), a calendar is the simpler contract — one run per
month, visible in advance in the UI, and a missing file is a failed run someone sees rather than
a file that never arrives and nobody notices. It is stopped by default because the sensor
already covers the common case; turn one of the two on, not both, or each month runs twice.

Built with `build_schedule_from_partitioned_job`, so its cadence and the month it asks for come
from the monthly partitions: a tick on the first of a month requests the last complete
partition, the previous month (the tick of 2019-12-01 runs 2019-11). The run key is the
partition key, so a month is run at most once by the schedule.
"""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from medallion_assets.automation.jobs import medallion_job

SCHEDULE_NAME = "medallion_monthly_schedule"
# The tick waits until 06:00 UTC on the 1st, leaving the night for the export to land.
HOUR_OF_DAY = 6

medallion_monthly_schedule = build_schedule_from_partitioned_job(
    medallion_job,
    name=SCHEDULE_NAME,
    hour_of_day=HOUR_OF_DAY,
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "On the 1st of each month at 06:00 UTC, runs bronze, silver and gold for the previous "
        "month. Stopped by default: the landing sensor already reacts to new files."
    ),
)
