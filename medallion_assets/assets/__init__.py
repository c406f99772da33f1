"""The medallion layers, one module each."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Every Spark asset uses BackfillPolicy.single_run() on purpose: a backfill of N months is one run,
# one Spark session and one Delta commit per table. Dagster flags the parameter as beta at every
# definition; say so once here instead of on every load of the code location.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", category=BetaWarning)
# Checks are partitioned like their assets so that the UI shows a result per month. Dagster flags
# partitioned checks as a preview at every definition; say so once here.
warnings.filterwarnings(
    "ignore", message=r"Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning
)
