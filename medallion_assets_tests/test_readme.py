"""The README's configuration table is the settings module's list, not a copy that drifts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from medallion_assets.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([A-Z_]+)` \| (.+?) \| (.+) \|$", line)
        if match and (match.group(1).startswith("MEDALLION_") or match.group(1).endswith("HOME")):
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_readme_lists_every_setting_with_its_default_and_no_other():
    rows = _table_rows()
    assert list(rows) == [variable for variable, _, _ in Settings.variables()]
    for variable, default, _ in Settings.variables():
        if default is None:
            shown = "unset"
        else:
            shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
        assert rows[variable] == shown, variable


def test_the_readme_stays_a_front_door_of_at_most_300_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def _quote_latest():
    path = README.parent / "benchmarks" / "quote_latest.py"
    spec = importlib.util.spec_from_file_location("quote_latest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_the_latest_benchmark_entries_as_recorded():
    """The README's benchmark figures are RESULTS.md's latest entries, copied by
    benchmarks/quote_latest.py, never typed: an edit by hand, or a new entry not yet quoted,
    fails here."""
    quote_latest = _quote_latest()
    readme = README.read_text(encoding="utf-8")
    results = quote_latest.RESULTS.read_text(encoding="utf-8")
    assert quote_latest.quoted(readme, results) == readme


def test_the_quote_is_the_last_entry_of_its_kind_line_for_line():
    quote_latest = _quote_latest()
    table = (
        "| run | key | Spark settings | wall |\n|---|---|---|---|\n"
        "| ours | pipeline | shared | {} |\n| duck | duckdb | none | 1 |\n"
    )
    results = (
        "### 5,000,000 rows, shape sample, 1 rounds\n\nCode: commit `aaa`, clean tree\n\n"
        + table.format("30.0")
        + "\nRatios of the medians:\n\n- ours / best: wall **1.30**\n\nOutputs:\n\n- same\n"
        "### Backfill: 3 months\n\nCode: commit `bbb`\n\nTargets:\n\n- one run / 3 runs: **0.90**"
        "\n\nDisk:\n\n- a lot\n\nPer month: one run 60.0 s\n"
        "### 5,000,000 rows, shape sample, 5 rounds\n\nCode: commit `ccc`, clean tree\n\n"
        + table.format("35.0")
        + "\nRatios of the medians:\n\n- ours / best: wall **1.20**\n\nOutputs:\n\n- same\n"
        # Another shape answers another question: it does not replace the headline.
        "### 5,000,000 rows, shape wide, 7 rounds\n\nCode: commit `ddd`, clean tree\n\n"
        + table.format("40.0")
        + "\nRatios of the medians:\n\n- ours / best: wall **1.40**\n\nOutputs:\n\n- same\n"
    )
    readme = (
        "# x\n<!-- latest-bench -->\nold\n<!-- /latest-bench -->\nmiddle\n"
        "<!-- latest-backfill -->\n<!-- /latest-backfill -->\nend\n"
    )
    out = quote_latest.quoted(readme, results)
    bench = out.split("<!-- latest-bench -->")[1].split("<!-- /latest-bench -->")[0]
    assert "5 rounds" in bench and "`ccc`" in bench and "| 35.0 |" in bench
    assert "1 rounds" not in bench and "| 30.0 |" not in bench and "old" not in bench
    assert "`ddd`" not in bench and "| 40.0 |" not in bench and "1.40" not in bench
    assert "duckdb" not in bench  # only the README's runs
    assert "- ours / best: wall **1.20**" in bench and "Outputs" not in bench
    backfill = out.split("<!-- latest-backfill -->")[1].split("<!-- /latest-backfill -->")[0]
    assert "`bbb`" in backfill and "**0.90**" in backfill
    assert "Per month: one run 60.0 s" in backfill
    assert "a lot" not in backfill
    assert out.startswith("# x\n") and "middle" in out and out.endswith("end\n")
