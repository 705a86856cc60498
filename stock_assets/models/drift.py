"""``models/drift``: have the champion's inputs or outputs moved away from what it was trained on?

The population stability index (PSI) compares the distribution of each feature, and of the
champion's predictions, over the latest sessions with the champion's own training window
(quantile bins of the reference, so every bin starts with the same share). Rule of thumb used in
credit scoring, where PSI comes from: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted. When the
share of shifted features or the prediction PSI crosses its threshold, the check fails (a warning:
an alert event in the UI and for the notifiers) and the materialization asks for a refit decided
at its newest session (``decision_session``), which `drift_refit_sensor` turns into a
`model_refit_job` run: trained on what was known at that session's close, serving from the next.
"""

import datetime as dt
import json

import dagster as dg
import numpy as np
import polars as pl

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.gold.feature_set import FLOAT_FEATURES
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.walk_forward import predict
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import CHAMPION, MlflowResource
from stock_assets.table_assets import table_key

DRIFT_KEY = dg.AssetKey(["models", "drift"])
NO_DRIFT = "inputs_and_predictions_stable"
SHIFTED = 0.25


class DriftConfig(dg.Config):
    recent_sessions: int = 20
    max_shifted_share: float = 0.2  # of the features
    max_prediction_psi: float = SHIFTED
    bins: int = 10


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (NaN ignored)."""
    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    if reference.size < bins or current.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference), minlength=edges.size + 1)
    actual = np.bincount(np.searchsorted(edges, current), minlength=edges.size + 1)
    e = np.clip(expected / expected.sum(), 1e-6, None)
    a = np.clip(actual / actual.sum(), 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dg.asset(
    key=DRIFT_KEY,
    deps=[
        dg.AssetDep(
            table_key(tables.GOLD_DAILY_FEATURES), partition_mapping=dg.AllPartitionMapping()
        ),
        dg.AssetDep(table_key(tables.GOLD_PREDICTIONS), partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name=MODELS_GROUP,
    kinds={"polars", "mlflow"},
    check_specs=[dg.AssetCheckSpec(NO_DRIFT, asset=DRIFT_KEY)],
)
def drift(config: DriftConfig, lake: LakeResource, mlflow_registry: MlflowResource):
    """PSI of every feature and of the champion's predictions: latest sessions vs training."""
    version = mlflow_registry.version_for(CHAMPION)
    if version is None:
        raise dg.Failure("no champion yet: nothing to compare with its training window")
    run = mlflow_registry.client().get_run(
        mlflow_registry.client().get_model_version(mlflow_registry.model_name, version).run_id
    )
    train_start = dt.date.fromisoformat(run.data.params["train_start"])
    train_end = dt.date.fromisoformat(run.data.params["train_end"])
    newest = lake.scan(tables.GOLD_DAILY_FEATURES).select(pl.col("date").max()).collect().item()
    recent_start = sessions_before(newest, config.recent_sessions - 1)
    members = pl.col("in_universe").fill_null(False)
    reference = lake.read_dates(tables.GOLD_DAILY_FEATURES, train_start, train_end).filter(members)
    current = lake.read_dates(tables.GOLD_DAILY_FEATURES, recent_start, newest).filter(members)
    scores = {
        name: psi(reference[name].to_numpy(), current[name].to_numpy(), config.bins)
        for name in FLOAT_FEATURES
    }
    valid = {k: v for k, v in scores.items() if np.isfinite(v)}
    shifted = sorted((k for k, v in valid.items() if v > SHIFTED), key=lambda k: -valid[k])
    booster = mlflow_registry.load_booster(version)
    prediction_psi = psi(
        predict(booster, reference)["prediction"].to_numpy(),
        predict(booster, current)["prediction"].to_numpy(),
        config.bins,
    )
    share = len(shifted) / len(valid) if valid else float("nan")
    refit = bool(share > config.max_shifted_share or prediction_psi > config.max_prediction_psi)
    top = dict(sorted(valid.items(), key=lambda kv: -kv[1])[:15])
    yield dg.MaterializeResult(
        metadata={
            "champion_version": version,
            "training_window": f"{train_start}..{train_end}",
            "recent_window": f"{recent_start}..{newest}",
            "features_compared": len(valid),
            "features_shifted": len(shifted),
            "shifted_share": round(share, 4),
            "prediction_psi": round(prediction_psi, 4),
            "top_feature_psi": dg.MetadataValue.json({k: round(v, 4) for k, v in top.items()}),
            "refit_requested": refit,
            "decision_session": newest.isoformat(),  # what a requested refit may know
        }
    )
    yield dg.AssetCheckResult(
        check_name=NO_DRIFT,
        passed=not refit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "shifted_share": round(share, 4),
            "prediction_psi": round(prediction_psi, 4),
            "shifted_features": json.dumps(shifted[:20]),
        },
    )
