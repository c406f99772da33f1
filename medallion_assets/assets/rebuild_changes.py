"""What a rebuilt month changed, against the version of it that the write replaces.

A month is built again when its file is replaced or corrected; whoever reads its reports then
needs to know whether the numbers moved, and by how much, without comparing two runs by hand.
Silver's and gold's materializations of a rebuilt month therefore say rows, purchase revenue and
purchases before → after, and gold/revenue_by_brand's the brands whose revenue changed most. A
month built for the first time says that instead (``change: first build of 2019-10``).

"Before" is read where it costs nothing: rows from the Delta log, silver's revenue and purchases
from the totals its previous write recorded (`medallion_assets.delta.month_summaries`), gold's
from the previous version's own files — the log names them, and a rewrite leaves them on storage
until a vacuum — aggregated by Spark: only per-month totals and ten brands per month reach the
driver.
"""

from __future__ import annotations

import decimal
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.partitions import key_of_month_value, month_value
from medallion_assets.resources.warehouse import spark_path
from medallion_assets.schema import GOLD_REVENUE_BY_BRAND_SCHEMA, MONTH_COLUMN

TOP_CHANGES = 10
NO_BRAND = "(no brand)"


@dataclass(frozen=True)
class Figures:
    """A month's rows, purchase revenue and purchases in one version; None where unknown."""

    rows: int | None
    revenue: decimal.Decimal | None = None
    purchases: int | None = None


@dataclass(frozen=True)
class BrandChange:
    brand: str
    before: decimal.Decimal
    after: decimal.Decimal

    @property
    def change(self) -> decimal.Decimal:
        return self.after - self.before


@dataclass(frozen=True)
class MonthChange:
    """One month's figures before and after a rebuild (``before`` None: a first build)."""

    month: str
    before: Figures | None
    after: Figures
    brands: tuple[BrandChange, ...] = ()

    @property
    def revenue_change_percent(self) -> float | None:
        """The revenue's move in percent of what it was; None when unknown or when it was 0 and
        still is; infinite when it was 0 and no longer is."""
        if self.before is None or self.before.revenue is None or self.after.revenue is None:
            return None
        if self.before.revenue == 0:
            return None if self.after.revenue == 0 else float("inf")
        return float(100 * (self.after.revenue - self.before.revenue) / self.before.revenue)

    def summary(self) -> str:
        if self.before is None:
            return f"first build of {self.month}"
        percent = self.revenue_change_percent
        parts = []
        for label, b, a in (
            ("rows", self.before.rows, self.after.rows),
            ("purchase revenue", self.before.revenue, self.after.revenue),
            ("purchases", self.before.purchases, self.after.purchases),
        ):
            if a is None and b is None:
                continue
            part = f"{label} {_shown(b)} → {_shown(a)}"
            if label == "purchase revenue" and percent is not None and percent != float("inf"):
                part += f" ({percent:+.2f} %)"
            parts.append(part)
        return f"rebuild of {self.month}: " + "; ".join(parts)

    def metadata(self) -> dict[str, object]:
        """The entries of the month's materialization: a one-line ``change``, each figure before
        and after (exact revenue as text), and the brands table when there is one."""
        entries: dict[str, object] = {"change": MetadataValue.text(self.summary())}
        if self.before is None:
            return entries
        for name, b, a in (
            ("rows", self.before.rows, self.after.rows),
            ("purchases", self.before.purchases, self.after.purchases),
        ):
            if b is not None:
                entries[f"{name}_before"] = MetadataValue.int(b)
            if a is not None:
                entries[f"{name}_after"] = MetadataValue.int(a)
        if self.before.revenue is not None:
            entries["purchase_revenue_before"] = MetadataValue.text(str(self.before.revenue))
        if self.after.revenue is not None:
            entries["purchase_revenue_after"] = MetadataValue.text(str(self.after.revenue))
        percent = self.revenue_change_percent
        if percent is not None and percent != float("inf"):
            entries["purchase_revenue_change_percent"] = MetadataValue.float(round(percent, 4))
        if self.brands or self.before.revenue is not None:
            entries["brands_changed_most"] = brands_table(self.brands)
        return entries


def _shown(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, decimal.Decimal):
        return f"{value:,.2f}"
    return f"{value:,}"


BRANDS_SCHEMA = TableSchema(
    columns=[
        TableColumn("brand", "string"),
        TableColumn("revenue_before", "string"),
        TableColumn("revenue_after", "string"),
        TableColumn("change", "string"),
    ]
)


def brands_table(brands: Sequence[BrandChange]) -> MetadataValue:
    return MetadataValue.table(
        [
            TableRecord(
                {
                    "brand": b.brand,
                    "revenue_before": f"{b.before:.2f}",
                    "revenue_after": f"{b.after:.2f}",
                    "change": f"{b.change:+.2f}",
                }
            )
            for b in brands
        ],
        schema=BRANDS_SCHEMA,
    )


def read_previous(
    session: SparkSession, previous_files: Mapping[str, Sequence[str]]
) -> DataFrame | None:
    """gold/revenue_by_brand as it was for the months of ``previous_files`` (month key -> the
    full paths of its files in the replaced version); None when there are none."""
    columns = [f for f in GOLD_REVENUE_BY_BRAND_SCHEMA.fields if f.name != MONTH_COLUMN]
    frames = [
        session.read.schema(T.StructType(columns))
        .parquet(*[spark_path(p) for p in paths])
        .withColumn(MONTH_COLUMN, F.lit(month_value(month)).cast(T.DateType()))
        for month, paths in sorted(previous_files.items())
        if paths
    ]
    if not frames:
        return None
    result = frames[0]
    for other in frames[1:]:
        result = result.unionByName(other)
    return result


def revenue_changes(
    months: Sequence[str],
    previous: DataFrame | None,
    written: DataFrame,
    rebuilt: Collection[str],
    limit: int = TOP_CHANGES,
    written_totals: Mapping[str, Figures] | None = None,
) -> dict[str, MonthChange]:
    """Each month's change of gold/revenue_by_brand: totals before (``previous``, the replaced
    version's rows; a month without them is a first build) and after (``written``; or
    ``written_totals`` when the write already counted them, which saves a Spark job), and the
    ``limit`` brands whose revenue moved most, by absolute change. Spark aggregates; the driver
    gets one row per month and at most ``limit`` per rebuilt month."""
    after = dict(written_totals) if written_totals is not None else _totals(written)
    before = _totals(previous) if previous is not None else {}
    brands: dict[str, list[BrandChange]] = {}
    if previous is not None:
        decimal_type = GOLD_REVENUE_BY_BRAND_SCHEMA["total_revenue"].dataType
        none = F.lit(None).cast(decimal_type)
        both = previous.select(
            MONTH_COLUMN, "brand", F.col("total_revenue").alias("before"), none.alias("after")
        ).unionByName(
            written.select(
                MONTH_COLUMN, "brand", none.alias("before"), F.col("total_revenue").alias("after")
            )
        )
        values = [F.lit(month_value(m)).cast(T.DateType()) for m in rebuilt]
        per_brand = (
            both.where(F.col(MONTH_COLUMN).isin(*values))
            .groupBy(MONTH_COLUMN, "brand")
            .agg(
                F.coalesce(F.sum("before"), F.lit(0)).alias("before"),
                F.coalesce(F.sum("after"), F.lit(0)).alias("after"),
            )
            .withColumn("change", F.col("after") - F.col("before"))
            .where(F.col("change") != 0)
        )
        order = Window.partitionBy(MONTH_COLUMN).orderBy(
            F.abs(F.col("change")).desc(), F.col("brand").asc_nulls_last()
        )
        top = per_brand.withColumn("rank", F.row_number().over(order)).where(
            F.col("rank") <= limit
        )
        for row in top.orderBy(MONTH_COLUMN, "rank").collect():
            brands.setdefault(key_of_month_value(row[MONTH_COLUMN]), []).append(
                BrandChange(
                    brand=row["brand"] if row["brand"] is not None else NO_BRAND,
                    before=decimal.Decimal(row["before"]),
                    after=decimal.Decimal(row["after"]),
                )
            )
    zero = Figures(rows=0, revenue=decimal.Decimal("0.00"), purchases=0)
    return {
        m: MonthChange(
            month=m,
            before=before.get(m, zero) if m in rebuilt else None,
            after=after.get(m, zero),
            brands=tuple(brands.get(m, ())),
        )
        for m in months
    }


def _totals(frame: DataFrame) -> dict[str, Figures]:
    rows = (
        frame.groupBy(MONTH_COLUMN)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("total_revenue").alias("revenue"),
            F.sum("purchases").alias("purchases"),
        )
        .collect()
    )
    return {
        key_of_month_value(r[MONTH_COLUMN]): Figures(
            rows=int(r["rows"]),
            revenue=decimal.Decimal(r["revenue"] or 0).quantize(decimal.Decimal("0.01")),
            purchases=int(r["purchases"] or 0),
        )
        for r in rows
    }
