"""Stock-price prediction platform as a Dagster code location."""

import warnings

import dagster as dg

# Single-run backfills (BackfillPolicy.single_run) are how daily partitions are rebuilt in bulk
# here; Dagster 1.13 still labels the parameter beta and warns on every import.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
