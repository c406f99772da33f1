"""How every layer declares its Delta tables and its checks, in one place.

Each table is a monthly-partitioned Delta table written by the Spark -> Delta IO manager: its
``month`` column is the partition column, its column schema is shown in the catalog before the
first run, and it carries the same kinds (the UI's Spark and Delta Lake icons), owners, a
``layer`` tag and its layer's code version. Every table of every layer is declared by
`delta_table`, so that no layer can drift from the others. Each check is blocking and partitioned
like its asset, so the UI shows a result per month and a failure stops what depends on the checked
asset.
"""

from collections.abc import Sequence

from dagster import AssetCheckSpec, AssetKey, AssetOut
from pyspark.sql import types as T

from medallion_assets.partitions import monthly_partitions
from medallion_assets.schema import MONTH_COLUMN, table_schema_metadata

OWNERS = ["team:data-engineering"]
KINDS = {"spark", "deltalake"}
# Each layer's code version, given to all of its tables. Dagster records it with every
# materialization; when a table's last materialization carries another version than its
# definition, the UI marks the table unsynced ("has a new code version"), and what is built from
# it with it: built by older code, to be rebuilt. Bump a layer's version when a change of its
# logic changes what its tables hold or how their files are laid out; a change that leaves both
# as they were (a faster plan) keeps it. The layers shared one version, "2", until each got its
# own:
CODE_VERSIONS = {
    # 3: Spark's CSV reader types the source file; only a month with rejected lines is read
    # again, as raw lines, for bronze/events_rejected.
    "bronze": "3",
    # 3: de-duplicated by sorting rather than hashing; each file holds a set of users, their
    # events in user and time order.
    "silver": "3",
    # 3: the aggregates of 2, bumped with the others so that every table built under the shared
    # version shows as older code.
    "gold": "3",
}


def table_metadata(schema: T.StructType) -> dict[str, object]:
    return {
        "partition_expr": MONTH_COLUMN,
        "dagster/column_schema": table_schema_metadata(schema),
    }


def delta_table(
    key: Sequence[str], *, schema: T.StructType, layer: str, description: str
) -> AssetOut:
    """The output of a multi-asset that is one of the warehouse's Delta tables of ``layer``
    (``bronze``, ``silver`` or ``gold``)."""
    return AssetOut(
        key=list(key),
        description=description,
        metadata=table_metadata(schema),
        kinds=KINDS,
        owners=OWNERS,
        tags={"layer": layer},
        code_version=CODE_VERSIONS[layer],
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
