"""`make bench-year`: a year of months as one single-run backfill against twelve runs.

    python benchmarks/scale.py [--year-rows 1000000]

Twelve months of --year-rows rows each: one single-run backfill (one Spark session, one commit
per table) against twelve separate one-month runs, through the dagster CLI. (A full-size month is
`make bench-scale`, benchmarks/bench.py at 42,448,764 rows.) Results are appended to RESULTS.md.
"""

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

from medallion_assets.partitions import monthly_partitions
from medallion_assets.tools.sample_data import generate_month

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import machine, materialize_args, pipeline_env  # noqa: E402
from measure import run_measured  # noqa: E402

BIN = Path(sys.executable).parent
YEAR = [k for k in monthly_partitions.get_partition_keys() if "2019-10" <= k <= "2020-09"]


def ensure_months(directory: Path, months: list[str], rows: int) -> None:
    marker = directory / "rows.json"
    want = {"rows": rows, "months": months}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for month in months:
        generate_month(month, rows, directory, seed=11)
    marker.write_text(json.dumps(want))


def materialize(name: str, landing: Path, warehouse: Path, work: Path, partition_args: list[str]):
    home = work / f"{name}_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    command = [str(BIN / "dagster"), *materialize_args(*partition_args)]
    env = pipeline_env(landing, warehouse, home)
    result = run_measured(name, command, env=env, log_path=str(work / f"{name}.log"))
    if result.returncode:
        raise SystemExit(f"{name} failed, see {work / (name + '.log')}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-year", action="store_true")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    lines = []

    if not args.skip_year:
        landing = work / "landing_year"
        ensure_months(landing, YEAR, args.year_rows)
        warehouse = work / "warehouse_year_single"
        shutil.rmtree(warehouse, ignore_errors=True)
        single = materialize(
            "year_single_run",
            landing,
            warehouse,
            work,
            ["--partition-range", f"{YEAR[0]}...{YEAR[-1]}"],
        )
        separate_seconds = 0.0
        warehouse = work / "warehouse_year_separate"
        shutil.rmtree(warehouse, ignore_errors=True)
        for month in YEAR:
            separate_seconds += materialize(
                f"year_{month}", landing, warehouse, work, ["--partition", month]
            ).seconds
        text = (
            f"12-month backfill ({args.year_rows:,} rows a month): "
            f"one single run {single.seconds:.0f} s "
            f"(peak JVM {single.peak_jvm_mb:.0f} MiB) vs 12 separate runs {separate_seconds:.0f} s "
            f"({separate_seconds / single.seconds:.2f}x)"
        )
        print(text, flush=True)
        lines.append(text)

    with open(args.results, "a") as handle:
        handle.write(f"\n### Scale, {dt.date.today().isoformat()} — {machine()}\n\n")
        for line in lines:
            handle.write(f"- {line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
