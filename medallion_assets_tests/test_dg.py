"""The project as a `dg` project: `dg check defs`, `dg list defs` and `dg launch`, run as a user
runs them from the project root, load the same `Definitions` that `dagster`, `make run` and the
other tests load.

What `dg` lists is compared with the `defs` object itself, so an asset, check, job, schedule or
sensor that `dg` cannot see (a wrong `[tool.dg]` target, an import that fails only from the
command line) fails here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from deltalake import DeltaTable

from medallion_assets.definitions import defs
from medallion_assets_tests.source_lines import good_lines, write_source

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"
TABLES = {
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
}


def run_dg(*args: str, home: Path) -> subprocess.CompletedProcess:
    """`dg ARGS` in the project root, with the project's virtual environment active (as after
    `source .venv/bin/activate`) and a fresh DAGSTER_HOME."""
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(VIRTUAL_ENV=sys.prefix, DAGSTER_HOME=str(home), NO_COLOR="1", COLUMNS="250")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    completed = subprocess.run(
        [str(DG), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def test_dg_check_defs_loads_the_project(tmp_path):
    completed = run_dg("check", "defs", home=tmp_path / "home")
    assert "All definitions loaded successfully." in completed.stdout


def test_dg_list_defs_lists_what_the_definitions_hold(tmp_path):
    listed = json.loads(run_dg("list", "defs", "--json", home=tmp_path / "home").stdout)

    asset_keys = {a["asset_key"] for a in listed["assets"]}
    assert asset_keys == {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert asset_keys >= TABLES
    check_keys = {(c["asset_key"], c["name"]) for c in listed["asset_checks"]}
    expected_checks = {
        (key.asset_key.to_user_string(), key.name)
        for key in defs.resolve_asset_graph().asset_check_keys
    }
    assert check_keys == expected_checks and check_keys
    assert {j["name"] for j in listed["jobs"]} >= {"medallion_monthly", "delta_maintenance"}
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in defs.schedules}
    assert {s["name"] for s in listed["sensors"]} == {s.name for s in defs.sensors}
    assert {r["name"] for r in listed["resources"]} == set(defs.resources)


def test_dg_list_defs_shows_every_table_to_a_reader(tmp_path):
    shown = run_dg("list", "defs", home=tmp_path / "home").stdout
    for key in TABLES:
        assert f"│ {key} " in shown, key
    assert "medallion_monthly" in shown and "landing_csv_sensor" in shown


def test_dg_launch_materializes_a_month_into_every_table(tmp_path, landing_dir, warehouse_dir):
    write_source(landing_dir, "2019-Oct.csv", good_lines(40))
    completed = run_dg("launch", "--assets", "*", "--partition", "2019-10", home=tmp_path / "home")

    assert "RUN_SUCCESS" in completed.stdout + completed.stderr
    for key in TABLES:
        files = DeltaTable(str(warehouse_dir / key)).get_add_actions(flatten=True)
        assert files.num_rows > 0, key
    bronze = DeltaTable(str(warehouse_dir / "bronze/events")).get_add_actions(flatten=True)
    assert sum(bronze.column("num_records").to_pylist()) == 40
