import subprocess
import sys

import pytest
from dagster import AssetKey

from medallion_assets.assets.tables import CODE_VERSIONS, OWNERS

EXPECTED = {
    ("bronze", "events"): "bronze",
    ("bronze", "events_rejected"): "bronze",
    ("silver", "events"): "silver",
    ("gold", "revenue_by_brand"): "gold",
    ("gold", "daily_funnel"): "gold",
}


LANDING = ("landing", "events_csv")


def test_every_asset_is_defined_with_its_group_kinds_and_description(defs):
    graph = defs.resolve_asset_graph()
    assert {tuple(k.path) for k in graph.get_all_asset_keys()} == {*EXPECTED, LANDING}
    for path, group in EXPECTED.items():
        node = graph.get(AssetKey(list(path)))
        assert node.group_name == group
        # "deltalake" is the kind the UI shows the Delta Lake icon for.
        assert {"spark", "deltalake"} <= set(node.kinds)
        assert node.description and len(node.description) > 40
        assert node.partitions_def.get_partition_keys()[0] == "2019-10"
        assert node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run is None
        assert node.owners and node.tags.get("layer") == group
        # Each table carries its own layer's code version, so the UI can tell which layer's
        # tables were built by older code.
        assert node.code_version == CODE_VERSIONS[group]
        # The column schema is in the catalog before anything is materialized.
        schema = node.metadata["dagster/column_schema"]
        assert schema.columns and all(c.description for c in schema.columns)


def test_the_landing_file_is_a_declared_external_asset_not_a_stub(defs):
    graph = defs.resolve_asset_graph()
    landing = graph.get(AssetKey(list(LANDING)))
    assert landing.is_external and not landing.is_materializable  # it arrives; nothing builds it
    assert "dagster/auto_created_stub_asset" not in landing.metadata
    assert landing.group_name == "landing"
    assert set(landing.kinds) == {"csv"}
    assert list(landing.owners) == OWNERS
    assert landing.description and "landing sensor" in landing.description
    assert landing.partitions_def.get_partition_keys()[0] == "2019-10"
    assert AssetKey(["bronze", "events"]) in landing.child_keys


def test_the_landing_file_is_the_first_node_of_the_lineage(defs):
    graph = defs.resolve_asset_graph()
    landing = graph.get(AssetKey(list(LANDING)))
    assert not landing.parent_keys
    assert graph.get(AssetKey(["bronze", "events"])).parent_keys == {AssetKey(list(LANDING))}


def test_lineage_is_bronze_to_silver_to_gold(defs):
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey(["silver", "events"])).parent_keys == {AssetKey(["bronze", "events"])}
    for gold in ("revenue_by_brand", "daily_funnel"):
        assert graph.get(AssetKey(["gold", gold])).parent_keys == {AssetKey(["silver", "events"])}


def test_each_layer_runs_as_one_step_named_after_it(defs):
    graph = defs.resolve_asset_graph()
    steps = {
        path: graph.get(AssetKey(list(path))).assets_def.node_def.name for path in EXPECTED
    }
    assert steps == {
        ("bronze", "events"): "bronze_events",
        ("bronze", "events_rejected"): "bronze_events",
        ("silver", "events"): "silver_events",
        ("gold", "revenue_by_brand"): "gold_tables",
        ("gold", "daily_funnel"): "gold_tables",
    }


def test_runs_execute_in_one_process_so_steps_share_one_spark_session(defs):
    job = defs.resolve_job_def("medallion_monthly")
    assert job.executor_def.name == "in_process"
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_the_io_manager_and_the_assets_share_one_spark_resource_and_one_warehouse(defs):
    resources = defs.resources
    assert resources["io_manager"].spark is resources["spark"]
    assert resources["io_manager"].warehouse is resources["warehouse"]


@pytest.mark.slow
def test_loading_the_definitions_leaves_what_they_loaded_out_of_garbage_collection():
    # In a process of its own: what matters is the state right after the code location loads.
    probe = (
        "import gc, medallion_assets.definitions; "
        "print(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    frozen, tracked = map(int, subprocess.check_output([sys.executable, "-c", probe]).split())
    assert frozen > 100_000  # Dagster and PySpark alone are more than that
    assert tracked < frozen / 10
