"""Quote the latest benchmark entries of RESULTS.md in the README, so that no figure there is typed.

    python benchmarks/quote_latest.py          # rewrite the README's quoted blocks
    python benchmarks/quote_latest.py --check  # exit 1 if the README is not what it would write

The README's Performance section holds the latest `bench.py` entry on the sample shape (its
heading, the commit it measured, its table's rows of `README_RUNS`, and its ratios) between
``<!-- latest-bench -->`` and ``<!-- /latest-bench -->``; its scaling section holds the latest
`backfill.py` entry's heading, commit, targets, disk and figures per month between
``<!-- latest-backfill -->`` and ``<!-- /latest-backfill -->``.
Both are copied from RESULTS.md line for line, never reworded: the entry is what the benchmark
printed. A test (`medallion_assets_tests/test_readme.py`) fails when the README quotes anything
else, so a new entry is quoted by running this script, not by editing the README.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
README = HERE.parent / "README.md"

# Entries on sample_data.py's default shape: a run on another shape (--shape wide) answers another
# question and does not replace the headline.
_BENCH_HEADING = re.compile(r"^### [0-9,]+ rows, shape sample")
_BACKFILL_HEADING = re.compile(r"^### Backfill: ")


def entries(results: str) -> list[list[str]]:
    """RESULTS.md's entries, each the lines from its ``### `` heading to the next one."""
    found: list[list[str]] = []
    for line in results.splitlines():
        if line.startswith("### "):
            found.append([line])
        elif found:
            found[-1].append(line)
    return found


def _latest(results: str, heading: re.Pattern[str]) -> list[str] | None:
    matching = [entry for entry in entries(results) if heading.match(entry[0])]
    return matching[-1] if matching else None


# The runs the README's table shows (the entry has more: DuckDB, the small months).
README_RUNS = ("pipeline", "best", "plain", "notebook", "notebook_today")


def _table(entry: list[str]) -> list[str]:
    """The entry's table: its header and the rows of `README_RUNS`, as printed."""
    table = [line for line in entry if line.startswith("|")]
    rows = [line for line in table[2:] if line.split("|")[2].strip() in README_RUNS]
    return table[:2] + rows


def _list_after(entry: list[str], title: Callable[[str], bool]) -> list[str]:
    """The bullet lines that follow the first line for which `title` is true."""
    for i, line in enumerate(entry):
        if title(line):
            rest = [item for item in entry[i + 1 :] if item.strip()]
            bullets = []
            for item in rest:
                if not item.startswith("- "):
                    break
                bullets.append(item)
            return bullets
    return []


def _code(entry: list[str]) -> str:
    return next((line for line in entry if line.startswith("Code: ")), "Code: (not recorded)")


def bench_quote(results: str) -> list[str]:
    entry = _latest(results, _BENCH_HEADING)
    if entry is None:
        return ["No `bench.py` entry in benchmarks/RESULTS.md yet: run `make bench`."]
    return [
        f"From [benchmarks/RESULTS.md](benchmarks/RESULTS.md), its latest `bench.py` entry: "
        f"**{entry[0].removeprefix('### ')}**. {_code(entry)}",
        "",
        *_table(entry),
        "",
        *_list_after(entry, lambda line: line.startswith("Ratios of the medians")),
    ]


def backfill_quote(results: str) -> list[str]:
    entry = _latest(results, _BACKFILL_HEADING)
    if entry is None:
        return ["No `backfill.py` entry in benchmarks/RESULTS.md yet: run `make bench-backfill`."]
    return [
        f"From [benchmarks/RESULTS.md](benchmarks/RESULTS.md), its latest `backfill.py` entry: "
        f"**{entry[0].removeprefix('### ')}**. {_code(entry)}",
        "",
        *_list_after(entry, lambda line: line == "Targets:"),
        *_list_after(entry, lambda line: line.startswith("Disk, ")),
        "",
        *(line for line in entry if line.startswith("Per month")),
    ]


BLOCKS = {"latest-bench": bench_quote, "latest-backfill": backfill_quote}


def quoted(readme: str, results: str) -> str:
    """`readme` with each block between its markers replaced by what RESULTS.md says."""
    for name, quote in BLOCKS.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start not in readme or end not in readme:
            raise ValueError(f"README.md has no {start} ... {end} block")
        before, rest = readme.split(start, 1)
        _, after = rest.split(end, 1)
        readme = before + start + "\n" + "\n".join(quote(results)) + "\n" + end + after
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    wanted = quoted(readme, RESULTS.read_text(encoding="utf-8"))
    if args.check:
        if wanted != readme:
            print("README.md does not quote the latest entries: run benchmarks/quote_latest.py")
            return 1
        print("README.md quotes the latest entries of benchmarks/RESULTS.md")
        return 0
    if wanted != readme:
        README.write_text(wanted, encoding="utf-8")
        print("README.md now quotes the latest entries of benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
