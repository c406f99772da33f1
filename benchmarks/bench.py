"""`make bench`: one month through four implementations, side by side.

    python benchmarks/bench.py [--rows 5000000] [--small-rows 1000] [--work benchmarks/work]

(a) our Dagster pipeline for the month, end to end through the dagster CLI (JVM start included);
(b) the same Spark transformations as a plain script (benchmarks/plain_spark.py);
(c) the old notebook's approach in plain PySpark (benchmarks/notebook_baseline.py);
(d) DuckDB doing the same three layers (benchmarks/duckdb_baseline.py);
plus (e) the pipeline on a tiny month, the fixed cost a user pays for any run.
Prints times, ratios and peak memory, and appends them with machine details to RESULTS.md.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from medallion_assets.sample_data import generate_month

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import Measurement, run_measured  # noqa: E402

MONTH = "2019-10"
BIN = Path(sys.executable).parent


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    import deltalake, duckdb, pyspark, dagster  # noqa: E401
    return (f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {java}, "
            f"pyspark {pyspark.__version__}, dagster {dagster.__version__}, deltalake {deltalake.__version__}, "
            f"duckdb {duckdb.__version__}")


def pipeline(name: str, landing: Path, work: Path) -> Measurement:
    warehouse = work / f"{name}_warehouse"
    home = work / f"{name}_dagster_home"
    shutil.rmtree(warehouse, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = dict(os.environ, MEDALLION_LANDING_DIR=str(landing), MEDALLION_WAREHOUSE_DIR=str(warehouse),
               DAGSTER_HOME=str(home))
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "medallion_assets.definitions",
               "--select", "*", "--partition", MONTH]
    result = run_measured(name, command, env=env, log_path=str(work / f"{name}.log"))
    shutil.rmtree(home, ignore_errors=True)
    return result


def script(name: str, file: str, csv: Path, work: Path) -> Measurement:
    out = work / f"{name}_out"
    shutil.rmtree(out, ignore_errors=True)
    return run_measured(name, [sys.executable, str(HERE / file), str(csv), str(out)],
                        log_path=str(work / f"{name}.log"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    work = args.work.resolve()
    landing, small_landing = work / "landing", work / "landing_small"
    for directory, rows in ((landing, args.rows), (small_landing, args.small_rows)):
        marker = directory / "rows.json"
        if not marker.exists() or json.loads(marker.read_text()) != rows:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            generate_month(MONTH, rows, directory, seed=1)
            marker.write_text(json.dumps(rows))
    csv = landing / "2019-Oct.csv"
    size_mb = csv.stat().st_size / 2**20
    print(f"Month {MONTH}: {args.rows:,} rows, {size_mb:,.0f} MiB at {csv}", flush=True)

    results = {}
    for name, run in [
        ("pipeline", lambda: pipeline("pipeline", landing, work)),
        ("plain_spark", lambda: script("plain_spark", "plain_spark.py", csv, work)),
        ("notebook", lambda: script("notebook", "notebook_baseline.py", csv, work)),
        ("duckdb", lambda: script("duckdb", "duckdb_baseline.py", csv, work)),
        ("pipeline_small", lambda: pipeline("pipeline_small", small_landing, work)),
    ]:
        m = run()
        results[name] = m
        status = "ok" if m.returncode == 0 else f"FAILED (exit {m.returncode}, see {work / (name + '.log')})"
        print(f"  {name:15s} {m.seconds:8.1f} s   python peak {m.peak_python_mb:7.0f} MiB   "
              f"JVM peak {m.peak_jvm_mb:7.0f} MiB   {status}", flush=True)
    if any(m.returncode for m in results.values()):
        return 1

    p, s, n, d = (results[k].seconds for k in ("pipeline", "plain_spark", "notebook", "duckdb"))
    ratios = {
        "pipeline / plain Spark (target <= 1.15)": p / s,
        "notebook / pipeline (target >= 1.5)": n / p,
        "pipeline / DuckDB (target <= 4)": p / d,
    }
    for label, value in ratios.items():
        print(f"  {label}: {value:.2f}")
    print(f"  {args.small_rows:,}-row month end to end (target <= 15 s): {results['pipeline_small'].seconds:.1f} s")

    block = [
        f"\n### One month, {dt.date.today().isoformat()} — {args.rows:,} rows ({size_mb:,.0f} MiB CSV)\n",
        f"Machine: {machine()}\n",
        "| run | seconds | peak Python MiB | peak JVM MiB |",
        "|---|---|---|---|",
    ]
    labels = {"pipeline": "(a) Dagster pipeline (dagster CLI)", "plain_spark": "(b) plain Spark script",
              "notebook": "(c) notebook approach", "duckdb": "(d) DuckDB",
              "pipeline_small": f"(e) pipeline, {args.small_rows:,}-row month"}
    for key, label in labels.items():
        m = results[key]
        block.append(f"| {label} | {m.seconds:.1f} | {m.peak_python_mb:.0f} | {m.peak_jvm_mb:.0f} |")
    block.append("")
    block += [f"- {label}: **{value:.2f}**" for label, value in ratios.items()]
    block.append(f"- {args.small_rows:,}-row month end to end (target <= 15 s): **{results['pipeline_small'].seconds:.1f} s**")
    if not args.results.exists():
        args.results.write_text(RESULTS_HEADER)
    with open(args.results, "a") as handle:
        handle.write("\n".join(block) + "\n")
    print(f"Appended to {args.results}")
    return 0


RESULTS_HEADER = """# Benchmark results

Appended by `make bench` (benchmarks/bench.py) and `make bench-scale` (benchmarks/scale.py). Times
are wall seconds, JVM start included; memory is the peak RSS of the Python driver and of the JVM.
"""


if __name__ == "__main__":
    raise SystemExit(main())
