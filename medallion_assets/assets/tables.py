"""How every layer declares its Delta tables and its checks, in one place.

Each table is a monthly-partitioned Delta table written by the Spark -> Delta IO manager: its
``month`` column is the partition column, its column schema is shown in the catalog before the
first run, and it carries the same kinds (the UI's Spark and Delta Lake icons), owners and a
``layer`` tag. Each check is blocking and partitioned like its asset, so the UI shows a result per
month and a failure stops what depends on the checked asset.
"""

from collections.abc import Sequence

from dagster import AssetCheckSpec, AssetKey, AssetOut
from pyspark.sql import types as T

from medallion_assets.partitions import monthly_partitions
from medallion_assets.schema import MONTH_COLUMN, table_schema_metadata

OWNERS = ["team:data-engineering"]
KINDS = {"spark", "deltalake"}
# Bumped when a layer's logic changes, so the UI can tell a table built by older code.
CODE_VERSION = "2"


def table_metadata(schema: T.StructType) -> dict[str, object]:
    return {
        "partition_expr": MONTH_COLUMN,
        "dagster/column_schema": table_schema_metadata(schema),
    }


def delta_table(
    key: Sequence[str], *, schema: T.StructType, layer: str, description: str
) -> AssetOut:
    """The output of a multi-asset that is one of the warehouse's Delta tables."""
    return AssetOut(
        key=list(key),
        description=description,
        metadata=table_metadata(schema),
        kinds=KINDS,
        owners=OWNERS,
        tags={"layer": layer},
        code_version=CODE_VERSION,
    )


def blocking_check(
    name: str,
    *,
    asset: AssetKey | Sequence[str],
    description: str,
    additional_deps: Sequence[AssetKey | Sequence[str]] = (),
) -> AssetCheckSpec:
    """A check computed in its asset's step; an ERROR stops what depends on the asset."""
    return AssetCheckSpec(
        name,
        asset=asset,
        description=description,
        additional_deps=list(additional_deps) or None,
        blocking=True,
        partitions_def=monthly_partitions,
    )
