"""How every layer declares its Delta tables and its checks, in one place.

Each table is a monthly-partitioned Delta table written by the Spark -> Delta IO manager: its
``month`` column is the partition column, its column schema is shown in the catalog before the
first run, and it carries the same kinds (the UI's Spark and Delta Lake icons), owners, a
``layer`` tag and its layer's code version. Every table of every layer is declared by
`delta_table`, so that no layer can drift from the others. Each check is blocking and partitioned
like its asset, so the UI shows a result per month and a failure stops what depends on the checked
asset; `month_evaluations` records each month's result under that month, whether the run built
one month or a range of them.
"""

from collections.abc import Iterator, Mapping, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    AssetRecordsFilter,
    DagsterInstance,
    Output,
)

# The one name this needs that Dagster does not export: the link from a check's result to the
# materialization it checked. Without it the UI takes every partition's result for one of an
# older materialization, and shows the month as not checked.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
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


def month_evaluations(
    context: AssetExecutionContext, results: Mapping[str, AssetCheckResult]
) -> Iterator[AssetCheckEvaluation | Output]:
    """Each month's result of one check (``results``: month key -> that month's result, with its
    own numbers) as an evaluation of that month's partition.

    Why not yield the `AssetCheckResult` itself: Dagster gives a result a partition only in a
    step of one partition. In a run of several months (`BackfillPolicy.single_run`) it would be
    recorded once, for no month, and the UI would show every month of the run as not evaluated
    ("Skipped"). An `AssetCheckEvaluation` carries its partition; Dagster records it as it is and
    still fails the step after it when it is a failed blocking check of ERROR severity
    (``dagster/_core/execution/plan/execute_step.py``), which stops what depends on the asset.

    Each evaluation points at the month's materialization of this run (the instance holds it by
    the time the checks run: the asset's output is yielded first), which the UI requires to show
    the result as the month's current one. A check not selected for the run is left out.
    """
    by_output = context.assets_def.check_specs_by_output_name
    outputs = {spec.key: (name, spec) for name, spec in by_output.items()}
    selected = context.selected_asset_check_keys
    emitted: set[AssetCheckKey] = set()
    for month, result in results.items():
        asset_key = AssetKey.from_coercible(result.asset_key)
        key = AssetCheckKey(asset_key, str(result.check_name))
        if key not in selected:
            continue
        output_name, spec = outputs[key]
        if key not in emitted:
            # The check's output, once per step (as Dagster yields it for an `AssetCheckResult`).
            emitted.add(key)
            yield Output(None, output_name=output_name)
        yield AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=key.name,
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
            blocking=spec.blocking,
            partition=month,
            target_materialization_data=_latest_materialization(
                context.instance, asset_key, month
            ),
        )


def _latest_materialization(
    instance: DagsterInstance, asset_key: AssetKey, month: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[month]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )
