"""The platform's one ranking rule, without Dagster: `gold/signals` stores its positions, and the
evaluation's books (the walk-forward folds, the API and the app through `models.evaluation`)
trade the same rule, so a change to it changes every figure at once.

Per session, rank the predictions (1 = highest; ties by instrument), go long the top k and short
the bottom k, equal weight, +1/k and -1/k of capital; the rest get side "none" and weight 0.
With fewer than 2k names, k shrinks to half of them.
"""

import polars as pl


def position_weights(frame: pl.DataFrame, top_k: int, prediction: str = "prediction"):
    """Per date, rank, k, side and signed weight of every row with a prediction, on any frame
    with ``date, instrument`` and ``prediction``."""
    rows = frame.filter(pl.col(prediction).is_not_null()).sort("date", "instrument")
    count = pl.len().over("date")
    k = pl.min_horizontal(pl.lit(top_k), count // 2)
    rank = pl.col(prediction).rank("ordinal", descending=True).over("date").cast(pl.Int32)
    side = (
        pl.when((rank <= k) & (k > 0))
        .then(pl.lit("long"))
        .when((rank > count - k) & (k > 0))
        .then(pl.lit("short"))
        .otherwise(pl.lit("none"))
    )
    weight = (
        pl.when(pl.col("side") == "long")
        .then(1.0 / pl.col("k"))
        .when(pl.col("side") == "short")
        .then(-1.0 / pl.col("k"))
        .otherwise(0.0)
    )
    return (
        rows.with_columns(rank=rank, k=k, names=count)
        .with_columns(side=side)
        .with_columns(weight=weight)
        .sort("date", "rank")
    )
