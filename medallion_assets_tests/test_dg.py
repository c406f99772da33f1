"""The project as a `dg` project: `dg check defs`, `dg list defs` and `dg launch`, run as a user
runs them from the project root, load the same `Definitions` that `dagster`, `make run` and the
other tests load.

What `dg` lists is compared with the `defs` object itself, so an asset, check, job, schedule or
sensor that `dg` cannot see (a wrong `[tool.dg]` target, an import that fails only from the
command line) fails here.

`dg` is configured as a user configures it, through its environment: each test gives the
process the variables it needs and none of the caller's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from medallion_assets.definitions import build_defs
from medallion_assets.settings import PREFIX, Settings
from medallion_assets_tests.source_lines import good_lines, write_source

# Every test runs the dg CLI in a process of its own.
pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"
TABLES = {
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
}


WEBHOOK = "https://hooks.example.com/services/T0001/B0002/not-to-be-listed"
PASSWORD = "hunter2-not-to-be-listed"


def run_dg(
    *args: str, home: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`dg ARGS` in the project root, with the project's virtual environment active (as after
    `source .venv/bin/activate`), a fresh DAGSTER_HOME and the project variables in `env` (none
    of the caller's)."""
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", PREFIX))
    }
    full_env.update(VIRTUAL_ENV=sys.prefix, DAGSTER_HOME=str(home), NO_COLOR="1", COLUMNS="250")
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    completed = subprocess.run(
        [str(DG), *args],
        cwd=PROJECT_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def test_dg_check_defs_loads_the_project(tmp_path):
    completed = run_dg("check", "defs", home=tmp_path / "home")
    assert "All definitions loaded successfully." in completed.stdout


def test_dg_check_defs_names_a_variable_holding_an_unusable_value(tmp_path):
    completed = run_dg(
        "check",
        "defs",
        home=tmp_path / "home",
        env={"MEDALLION_SENSOR_INTERVAL_SECONDS": "0"},
        check=False,
    )
    assert completed.returncode != 0
    said = completed.stdout + completed.stderr
    assert "SettingsError" in said
    assert "$MEDALLION_SENSOR_INTERVAL_SECONDS='0': Input should be greater than or equal to 1" in (
        said
    )


def test_dg_list_defs_lists_what_the_definitions_hold(tmp_path):
    listed = json.loads(run_dg("list", "defs", "--json", home=tmp_path / "home").stdout)
    defs = build_defs(Settings())

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
    assert {r["name"]: r["type"] for r in listed["resources"]} == {
        name: f"{type(resource).__module__}.{type(resource).__qualname__}"
        for name, resource in defs.resources.items()
    }


def test_dg_list_defs_never_prints_the_alert_secrets_of_its_environment(tmp_path):
    """`dg list defs` names the resources (and their types), not their configuration; with the
    secrets set it loads them as `EnvVar`s and prints neither value, in either format."""
    secrets = {"MEDALLION_ALERT_WEBHOOK_URL": WEBHOOK, "MEDALLION_SMTP_PASSWORD": PASSWORD}
    home = tmp_path / "home"

    table = run_dg("list", "defs", home=home, env=secrets)
    listed = run_dg("list", "defs", "--json", home=home, env=secrets)

    assert "│ alerts " in table.stdout
    assert "medallion_assets.resources.alert_channels.AlertChannels" in listed.stdout
    for completed in (table, listed):
        printed = completed.stdout + completed.stderr
        assert WEBHOOK not in printed and "not-to-be-listed" not in printed
        assert PASSWORD not in printed


def test_dg_list_defs_shows_every_table_to_a_reader(tmp_path):
    shown = run_dg("list", "defs", home=tmp_path / "home").stdout
    for key in TABLES:
        assert f"│ {key} " in shown, key
    assert "medallion_monthly" in shown and "landing_csv_sensor" in shown


def test_dg_launch_materializes_a_month_into_every_table(tmp_path, landing_dir, warehouse_dir):
    write_source(landing_dir, "2019-Oct.csv", good_lines(40))
    completed = run_dg(
        "launch",
        "--assets",
        "*",
        "--partition",
        "2019-10",
        home=tmp_path / "home",
        env={
            "MEDALLION_LANDING_DIR": str(landing_dir),
            "MEDALLION_WAREHOUSE_DIR": str(warehouse_dir),
        },
    )

    assert "RUN_SUCCESS" in completed.stdout + completed.stderr
    for key in TABLES:
        files = DeltaTable(str(warehouse_dir / key)).get_add_actions(flatten=True)
        assert files.num_rows > 0, key
    bronze = DeltaTable(str(warehouse_dir / "bronze/events")).get_add_actions(flatten=True)
    assert sum(bronze.column("num_records").to_pylist()) == 40
