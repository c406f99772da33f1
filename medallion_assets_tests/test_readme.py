"""The README's configuration table is the settings module's list, not a copy that drifts."""

from __future__ import annotations

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
