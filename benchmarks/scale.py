"""A year of months as one single-run backfill against twelve runs: backfill.py with twelve months.

    python benchmarks/scale.py [--year-rows 1000000] [backfill.py's other options]

Twelve months (2019-10 to 2020-09) of --year-rows rows each, measured and recorded as
`make bench-year` does (`backfill.py --months 12 --rows 1000000`): both ways through the dagster
CLI, wall and CPU seconds, the driver's heap, RSS, scratch disk, the outputs compared. Kept so
that this command goes on working; `make bench-year` runs backfill.py itself.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backfill

YEAR_MONTHS = 12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--year-rows", type=int, default=1_000_000)
    args, rest = parser.parse_known_args(argv)
    return backfill.main(["--months", str(YEAR_MONTHS), "--rows", str(args.year_rows), *rest])


if __name__ == "__main__":
    raise SystemExit(main())
