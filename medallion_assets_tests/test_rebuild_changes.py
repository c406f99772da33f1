"""A rebuilt month says what changed: silver's and gold's materializations against the version they
replace, and one notice to a real webhook when the month's revenue moved.

The expected numbers are worked out from the source lines themselves, with `csv` and `Decimal`,
not by the project's transforms.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from decimal import Decimal

import pytest
from dagster import DagsterInstance

from medallion_assets_tests.source_lines import good_lines, run_job, write_source
from medallion_assets_tests.test_alerts import Webhook
from medallion_assets_tests.test_checks import materializations_by_month

MONTH = "2019-10"


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def bodies(hook: Webhook) -> list[dict]:
    """The JSON bodies the endpoint was sent, in order."""
    return [json.loads(body) for _, _, body in hook.requests]


def by_brand(lines: list[str]) -> dict[str, tuple[Decimal, int]]:
    """Purchase revenue and purchases per brand ('' for none) of distinct lines with a user."""
    totals: dict[str, list] = defaultdict(lambda: [Decimal("0"), 0])
    for row in csv.reader(sorted(set(lines))):
        if row[1] == "purchase" and row[7]:
            totals[row[5]][0] += Decimal(row[6])
            totals[row[5]][1] += 1
    return {brand: (revenue, count) for brand, (revenue, count) in totals.items()}


def changed(lines: list[str]) -> list[str]:
    """The month's file corrected: every third purchase's price raised by 10.50, every seventh
    line gone."""
    result = []
    purchases = 0
    for i, line in enumerate(lines):
        if i % 7 == 3:
            continue
        row = line.split(",")
        if row[1] == "purchase":
            purchases += 1
            if purchases % 3 == 0:
                row[6] = str(Decimal(row[6]) + Decimal("10.50"))
        result.append(",".join(row))
    return result


@pytest.mark.graph
def test_a_rebuilt_month_shows_before_and_after_and_notifies_once(
    spark, landing_dir, settings, webhook
):
    first = good_lines(300)
    write_source(landing_dir, "2019-Oct.csv", first)
    deployment = settings.model_copy(update={"alert_webhook_url": webhook.url})
    instance = DagsterInstance.ephemeral()

    assert run_job(deployment, instance=instance).success
    built = materializations_by_month(instance, ("gold", "revenue_by_brand"))[MONTH]
    assert built["change"] == "first build of 2019-10"
    assert "rows_before" not in built
    assert materializations_by_month(instance, ("silver", "events"))[MONTH]["change"] == (
        "first build of 2019-10"
    )
    assert bodies(webhook) == []  # a first build is no news

    second = changed(first)
    write_source(landing_dir, "2019-Oct.csv", second)
    assert run_job(deployment, instance=instance).success

    before, after = by_brand(first), by_brand(second)
    revenue = [sum(v[0] for v in t.values()) for t in (before, after)]
    purchases = [sum(v[1] for v in t.values()) for t in (before, after)]
    silver = materializations_by_month(instance, ("silver", "events"))[MONTH]
    assert (silver["rows_before"], silver["rows_after"]) == (len(first), len(second))
    assert (silver["purchase_revenue_before"], silver["purchase_revenue_after"]) == tuple(
        str(r) for r in revenue
    )
    assert (silver["purchases_before"], silver["purchases_after"]) == tuple(purchases)
    assert silver["change"].startswith(
        f"rebuild of 2019-10: rows {len(first):,} → {len(second):,}; purchase revenue "
        f"{revenue[0]:,.2f} → {revenue[1]:,.2f} ("
    )

    gold = materializations_by_month(instance, ("gold", "revenue_by_brand"))[MONTH]
    assert (gold["rows_before"], gold["rows_after"]) == (len(before), len(after))
    assert (gold["purchase_revenue_before"], gold["purchase_revenue_after"]) == tuple(
        str(r) for r in revenue
    )
    assert (gold["purchases_before"], gold["purchases_after"]) == tuple(purchases)
    percent = float(100 * (revenue[1] - revenue[0]) / revenue[0])
    assert gold["purchase_revenue_change_percent"] == pytest.approx(percent, abs=1e-4)
    zero = (Decimal("0"), 0)
    moves = {
        b or "(no brand)": (before.get(b, zero)[0], after.get(b, zero)[0])
        for b in set(before) | set(after)
        if before.get(b, zero)[0] != after.get(b, zero)[0]
    }
    expected = sorted(moves.items(), key=lambda kv: (-abs(kv[1][1] - kv[1][0]), kv[0]))[:10]
    table = [
        (r.data["brand"], r.data["revenue_before"], r.data["revenue_after"], r.data["change"])
        for r in gold["brands_changed_most"].records
    ]
    assert table == [(b, f"{x:.2f}", f"{y:.2f}", f"{y - x:+.2f}") for b, (x, y) in expected]
    assert table  # the corrected prices moved some brand

    assert len(bodies(webhook)) == 1
    text = bodies(webhook)[0]["text"]
    assert text.startswith("Revenue changed by a rebuild of 2019-10\n")
    assert f"purchase revenue {revenue[0]:,.2f} → {revenue[1]:,.2f}" in text
    assert f"purchases {purchases[0]:,} → {purchases[1]:,}" in text
    assert "/runs/" in text


@pytest.mark.graph
def test_a_rebuild_within_the_notice_share_sends_nothing(spark, landing_dir, settings, webhook):
    lines = good_lines(120)
    write_source(landing_dir, "2019-Oct.csv", lines)
    deployment = settings.model_copy(update={"alert_webhook_url": webhook.url})
    instance = DagsterInstance.ephemeral()
    assert run_job(deployment, instance=instance).success
    assert run_job(deployment, instance=instance).success  # the same file again

    gold = materializations_by_month(instance, ("gold", "revenue_by_brand"))[MONTH]
    assert gold["purchase_revenue_before"] == gold["purchase_revenue_after"]
    assert gold["purchase_revenue_change_percent"] == 0.0
    assert gold["brands_changed_most"].records == []
    assert bodies(webhook) == []
