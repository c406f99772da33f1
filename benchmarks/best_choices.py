"""Each choice of Spark's best script (best.py), measured: the script with that one choice
reverted to floor.py's, or with one candidate applied, against the script as it stands.

    python benchmarks/best_choices.py [--rows 5000000] [--rounds 3] [--shape sample] [--seed N]
                                      [--only KEY,...] [--no-append] [--work DIR]

The variants are best.py's own list (`best.variants`): ``revert_<choice>`` for every choice the
script makes differently from floor.py (``best.py --revert <choice>``), ``<choice>_<value>`` for
every candidate it knows and does not use (``best.py --choice <choice>=<value>``). Each variant
is compared with best.py as it stands, in pairs of whole processes (``measure.run_measured``:
process and JVM start included): every round runs every pair, the pairs in an order shuffled
with a seed and the two runs of each pair in a shuffled order too (ABAB... or BABA...), so that
each variant is measured next to a run of the script it is compared with. The seed and every
round's order are recorded.

After each run its outputs are compared with every earlier run's (bench.py's `CrossCheck`: the
silver rows, the exact revenue of each brand over purchases), and a difference fails the
measurement: a choice may change only how fast the work is done. Every run must also have been
started with the shared settings (bench.py's `check_settings`); a variant changes SQL settings
at run time only, as best.py does.

For each variant: the medians, with min-max, of its wall and CPU seconds and of those of the
best.py runs paired with it, and the median over the rounds of the difference within each pair
(variant - best.py): for a revert, what the choice saves; for a candidate, what it would cost
(negative: the candidate is faster, and should become a choice). The table is printed and, unless
--no-append, appended to RESULTS.md with the commit measured and whether the tree was clean, the
machine, the load averages before and after, the seed and the orders. The month is bench.py's,
generated once and reused (`bench.ensure_month`).

11 variants, 3 rounds: 66 runs; on the 5M-row month about half an hour on 2 cores. --only
measures some of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import best  # noqa: E402
import spark_settings  # noqa: E402
from bench import (  # noqa: E402
    CPU_SOURCES,
    BenchmarkFailed,
    CrossCheck,
    Variant,
    check_plain_schema,
    check_settings,
    code_state,
    describe_code,
    ensure_month,
    load_average,
    machine,
    median_spread,
    month_directory,
    pipeline_env,
    printed_line,
    record,
    run_log,
    run_variant,
)
from measure import Measurement  # noqa: E402

from medallion_assets.tools.sample_data import SHAPES  # noqa: E402

BEST = Variant("best.py as it stands", "best.py", spark_settings.SHARED)


def comparisons() -> dict[str, Variant]:
    """Each variant of best.py by its key, in best.py's order."""
    found = {}
    for name, value in best.variants():
        choice = best.CHOICES[name]
        kind = "reverted to floor.py's" if value == choice.plain else "candidate"
        found[best.variant_key(name, value)] = Variant(
            f"{choice.what}: {name}={value} ({kind}; best.py: {choice.best})",
            "best.py",
            spark_settings.SHARED,
            args=tuple(best.variant_args(name, value)),
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="sample")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the rounds' orders (default: a new one)"
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated keys of the variants to measure (all)"
    )
    parser.add_argument(
        "--no-append", action="store_true", help="print the entry without appending it"
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    variants = comparisons()
    if args.only:
        keys = args.only.split(",")
        unknown = [key for key in keys if key not in variants]
        if unknown:
            parser.error(f"unknown variants {unknown}: expected some of {', '.join(variants)}")
        variants = {key: variants[key] for key in keys}
    try:
        return run(args, variants)
    except BenchmarkFailed as failure:
        print(f"BENCHMARK FAILED: {failure}", flush=True)
        return 1


def run(args: argparse.Namespace, variants: dict[str, Variant]) -> int:
    check_plain_schema()
    commit, changed = code_state()
    months = args.work.resolve()
    work = months / "best_choices"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    csv = ensure_month(month_directory(months, args.rows, args.shape), args.rows, args.shape)
    size_mb = csv.stat().st_size / 2**20
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    shuffler = random.Random(seed)
    # Each round: the pairs in a shuffled order, each pair's two runs in a shuffled order.
    orders = [
        [(key, shuffler.random() < 0.5) for key in shuffler.sample(list(variants), len(variants))]
        for _ in range(args.rounds)
    ]
    settings_file = work / "spark_settings.json"
    expected = spark_settings.write_file(settings_file, pipeline_env(months, months, months))
    print(
        f"Spark's best, each choice: {len(variants)} variants; {args.rows:,} rows, shape "
        f"{args.shape}, {size_mb:,.0f} MiB; {args.rounds} rounds; order seed {seed}",
        flush=True,
    )

    runs: dict[tuple[str, str], list[Measurement]] = {}
    checks = CrossCheck()
    load_before = load_average()
    for round_number, order in enumerate(orders, start=1):
        print(f"round {round_number}: {describe_order(order)}", flush=True)
        for key, variant_first in order:
            pair = [(key, variants[key]), (f"best.{key}", BEST)]
            for name, variant in pair if variant_first else reversed(pair):
                measurement, _, outputs = run_variant(
                    name, variant, csv, work, settings_file, round_number
                )
                if outputs is None:
                    raise BenchmarkFailed(
                        f"{name} failed (exit {measurement.returncode}); see "
                        f"{run_log(work, name, round_number)}"
                    )
                check_settings(name, variant, measurement, expected)
                checks.add(name, round_number, False, outputs)
                side = "best" if variant is BEST else "variant"
                runs.setdefault((key, side), []).append(measurement)
                print(
                    f"  {name:26s} wall {measurement.seconds:7.1f} s   CPU "
                    f"{measurement.cpu_seconds:7.1f} s",
                    flush=True,
                )
    load_after = load_average()
    commit_after, _ = code_state()

    first = next(iter(variants))
    text = "\n".join(
        entry(
            args,
            size_mb,
            seed,
            orders,
            variants,
            runs,
            checks,
            expected,
            describe_code(commit, changed, commit_after),
            load_before,
            load_after,
            printed_line(run_log(work, f"best.{first}", args.rounds), "best.py: "),
        )
    )
    record(text, args.results, append=not args.no_append)
    return 0


def describe_order(order: list[tuple[str, bool]]) -> str:
    return ", ".join(
        f"{key} ({'variant' if variant_first else 'best.py'} first)" for key, variant_first in order
    )


def difference(variant: list[float], paired: list[float]) -> str:
    """The median over the rounds of variant - best.py within each pair, and its share of the
    median of best.py's runs."""
    differences = [v - b for v, b in zip(variant, paired, strict=True)]
    median = statistics.median(differences)
    share = 100 * median / statistics.median(paired)
    return f"{median:+.1f} ({share:+.0f} %)"


def verdict(reverted: bool, wall: float, cpu: float) -> str:
    """What the pair's differences say, worked out from them: a revert slower in wall and CPU
    seconds is a choice that saves time, a candidate faster in both is one that would."""
    if (wall > 0) != (cpu > 0):
        return "mixed: wall and CPU seconds disagree"
    if reverted:
        return "kept: the choice saves time" if wall > 0 else "the choice costs time: drop it"
    return "faster: make it a choice" if wall < 0 else "slower: not kept"


def entry(
    args: argparse.Namespace,
    size_mb: float,
    seed: int,
    orders: list[list[tuple[str, bool]]],
    variants: dict[str, Variant],
    runs: dict[tuple[str, str], list[Measurement]],
    checks: CrossCheck,
    expected: dict[str, dict[str, str]],
    code: str,
    load_before: str,
    load_after: str,
    best_line: str | None,
) -> list[str]:
    """The RESULTS.md entry: everything in it is worked out from this measurement."""
    cpu_sources = sorted({CPU_SOURCES[m.cpu_source] for ms in runs.values() for m in ms})
    left = sum(m.left_running for ms in runs.values() for m in ms)
    block = [
        f"\n### Spark's best, each choice's gain: {args.rows:,} rows, shape {args.shape} "
        f"({size_mb:,.0f} MiB CSV), {args.rounds} rounds, {dt.date.today().isoformat()}\n",
        f"{code}\n",
        f"Machine: {machine()}\n",
        f"Load average (1 / 5 / 15 min): {load_before} before the first run, "
        f"{load_after} after the last\n",
        f"Order of the pairs (shuffled each round, and each pair's two runs, seed {seed}): "
        + "; ".join(f"{i}: {describe_order(order)}" for i, order in enumerate(orders, start=1))
        + "\n",
        "Each variant is best.py with one choice reverted to floor.py's or one candidate "
        "applied, against best.py as it stands, in pairs of runs next to each other; "
        "variant - best.py is the median over the rounds of the difference within each pair "
        "(for a revert: what the choice saves; for a candidate: what it would cost).\n",
        "| variant | key | wall s, variant | wall s, best.py | wall, variant - best.py | "
        "CPU s, variant | CPU s, best.py | CPU, variant - best.py | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, variant in variants.items():
        mine, paired = runs[(key, "variant")], runs[(key, "best")]
        wall = [m.seconds for m in mine], [m.seconds for m in paired]
        cpu = [m.cpu_seconds for m in mine], [m.cpu_seconds for m in paired]
        wall_gain = statistics.median(v - b for v, b in zip(*wall, strict=True))
        cpu_gain = statistics.median(v - b for v, b in zip(*cpu, strict=True))
        block.append(
            f"| {variant.label} | {key} | {median_spread(wall[0])} | {median_spread(wall[1])} | "
            f"{difference(*wall)} | {median_spread(cpu[0])} | {median_spread(cpu[1])} | "
            f"{difference(*cpu)} | "
            f"{verdict('--revert' in variant.args, wall_gain, cpu_gain)} |"
        )
    every_best = [m for (_, side), ms in runs.items() if side == "best" for m in ms]
    block += [
        "",
        f"best.py over all its {len(every_best)} runs: wall "
        f"{median_spread([m.seconds for m in every_best])} s, CPU "
        f"{median_spread([m.cpu_seconds for m in every_best])} s.",
        "",
        "Outputs, compared run by run (a difference fails the measurement):",
        "",
        *checks.summary(0),
        "",
        f"CPU seconds: user + system of each run's whole process tree ({', '.join(cpu_sources)})"
        + (f"; {left} processes outlived their run and are not counted" if left else "")
        + ".",
        "",
        f"best.py as it stands, as its last run printed it: "
        f"`{best_line or '(no such line in its log)'}`",
        "",
        "Every run started with the shared Spark settings (read back from its JVM's command "
        "line): " + spark_settings.describe(expected[spark_settings.SHARED]),
    ]
    return block


if __name__ == "__main__":
    raise SystemExit(main())
