"""The model core: labels, walk-forward training, evaluation, conformal intervals (no Dagster)."""
