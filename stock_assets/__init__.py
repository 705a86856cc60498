"""Stock-price prediction platform as a Dagster code location."""

import warnings

# Single-run backfills (BackfillPolicy.single_run) are how daily partitions are rebuilt in bulk
# here; Dagster 1.13 still labels the parameter beta and warns on every import. Matched by text
# so that importing the package (the CLI does) does not import Dagster.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")
# Code references (each asset linked to its source file in the UI) are beta in Dagster 1.13 too.
warnings.filterwarnings("ignore", message=".*(CodeReference|code_references)")
