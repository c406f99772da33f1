"""Tiny hand-made source files for the reliability tests, and helpers to run the real job on them.

Lines are written here rather than by the sample generator so that each test states exactly which
bytes it feeds the pipeline (line endings, BOM, quotes, compression).
"""

import datetime as dt
import gzip
import uuid
from pathlib import Path

from dagster import DagsterInstance
from deltalake import DeltaTable

from medallion_assets.definitions import build_defs
from medallion_assets.schema import SOURCE_HEADER
from medallion_assets.settings import Settings

TABLES = (
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
)
DOWNSTREAM_STEPS = ("silver_events", "gold_tables")
_KINDS = ("view", "view", "cart", "remove_from_cart", "purchase")
_BRANDS = ("apple", "samsung", "", "xiaomi")


def good_line(i: int, month: str = "2019-10") -> str:
    """A valid source line, different for every ``i``: all event kinds, empty brands and category
    codes, prices with and without cents, every day of the month."""
    day = 1 + i % 28
    hour, minute, second = (i // 3600) % 24, (i // 60) % 60, i % 60
    category_code = "" if i % 3 == 0 else "electronics.smartphone"
    price = f"{(i * 37) % 900}.{(i * 13) % 100:02d}"
    return (
        f"{month}-{day:02d} {hour:02d}:{minute:02d}:{second:02d} UTC,{_KINDS[i % 5]},{1000 + i},"
        f"2053013555631882655,{category_code},{_BRANDS[i % 4]},{price},{500 + i % 40},"
        f"{uuid.UUID(int=i + 1)}"
    )


def good_lines(count: int, month: str = "2019-10", start: int = 0) -> list[str]:
    return [good_line(i, month) for i in range(start, start + count)]


def write_source(
    landing: Path,
    name: str,
    lines: list[str],
    *,
    header: str | None = SOURCE_HEADER,
    newline: str = "\n",
    bom: bool = False,
) -> Path:
    """Write a source file exactly as given; gzip-compressed when ``name`` ends with ``.gz``."""
    body = newline.join(([header] if header is not None else []) + lines)
    if body:
        body += newline
    data = (("\ufeff" if bom else "") + body).encode("utf-8")
    path = landing / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def run_job(
    settings: Settings,
    partition_key: str = "2019-10",
    instance: DagsterInstance | None = None,
    **kwargs,
):
    """The project's job for one month, configured by ``settings``, as the Dagster CLI or UI
    would launch it."""
    job = build_defs(settings).resolve_job_def("medallion_monthly")
    return job.execute_in_process(
        partition_key=partition_key,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kwargs,
    )


def table_state(warehouse: Path) -> dict[str, tuple[int, frozenset[str]]]:
    """Each table's Delta version and every file under its directory (data, log, staging)."""
    state = {}
    for table in TABLES:
        path = warehouse / table
        files = frozenset(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        state[table] = (DeltaTable(str(path)).version(), files)
    return state


def started_steps(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]


def retried_steps(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def materialization_metadata(result, step: str, asset: str, partition: str = "2019-10") -> dict:
    for event in result.asset_materializations_for_node(step):
        if event.asset_key.to_user_string() == asset and event.partition == partition:
            return {k: v.value for k, v in event.metadata.items()}
    raise AssertionError(f"no materialization of {asset} {partition}")


def check_evaluations(result) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def utc(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.timezone.utc)
