"""``models/challenger``: the month's refit, logged and registered in MLflow as ``challenger``.

One partition per month: the model that will predict that month, trained on what was known
before it (`training`: train, early-stopping and gate slices, disjoint, gaps of the horizon).
A refit requested by drift runs the same partition with ``decision_session`` set: trained on
what was known at that session's close, it serves from the next session.
Its two blocking checks gate promotion, both on the gate slice the model was neither fitted nor
stopped on: its rank IC must clear a floor, and it must beat the champion on the same
out-of-sample days by a paired Newey-West t (`gate.promotes`). A refit whose cut and inputs
match a version already registered for the month (same training digest) registers nothing: it
reports that version and its stored verdict.
"""

import datetime as dt
import json
import time
from importlib.metadata import version as package_version
from typing import Literal

import dagster as dg
import mlflow
import numpy as np
import polars as pl
from mlflow.models import infer_signature

from stock_assets import tables
from stock_assets.models import gate, return_calibration
from stock_assets.models.evaluation import ic_report
from stock_assets.models.training import (
    SHIPPED_SPLIT,
    MonthlyInputs,
    MonthlyModel,
    month_decision,
    prepare_month,
    train_prepared,
)
from stock_assets.models.walk_forward import LightGBMConfig, SplitConfig, feature_matrix, predict
from stock_assets.partitions import monthly_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import CHALLENGER, MlflowResource
from stock_assets.table_assets import table_key

MODELS_GROUP = "models"
KEY = ["instrument", "ticker", "date"]
CHALLENGER_KEY = dg.AssetKey(["models", "challenger"])
RANK_IC_FLOOR = "gate_rank_ic_above_floor"
BEATS_CHAMPION = "beats_champion_out_of_sample"
# explicit requirements: inferring them took 3.5 s per model here, against 0.06 s
PIP_REQUIREMENTS = [
    f"{name}=={package_version(name)}" for name in ("lightgbm", "numpy", "pandas", "scikit-learn")
]
model_months = monthly_partitions("1985-01-01")


class TrainingConfig(dg.Config):
    """Split, LightGBM and gate settings (run config; the defaults are the shipped layout)."""

    horizon: int = SHIPPED_SPLIT.horizon
    validation_sessions: int = SHIPPED_SPLIT.validation_sessions  # early stopping
    gate_sessions: int = SHIPPED_SPLIT.gate_sessions  # gate and conformal calibration
    min_train_sessions: int = SHIPPED_SPLIT.min_train_sessions
    window: Literal["expanding", "rolling"] = "expanding"
    rolling_sessions: int = 750
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    seed: int = 42
    confidence_level: float = 0.9
    # measured on the gate slice (the held-out validation). On 20 sessions the rank IC's noise
    # band is about +-0.03: the default floor only stops a model that ranks clearly backwards
    min_validation_rank_ic: float = -0.03
    min_paired_t: float = gate.MIN_T
    min_paired_days: int = gate.MIN_DAYS
    # YYYY-MM-DD: a refit decided at that session's close (drift_refit_sensor sets it); empty:
    # the month's scheduled refit, decided before its first session. Not part of the digest: a
    # refit decided on a month's eve learns what the month's scheduled refit learns
    decision_session: str = ""

    def decision(self) -> dt.date | None:
        return dt.date.fromisoformat(self.decision_session) if self.decision_session else None

    def settings(self) -> dict:
        """What the training digest keys on besides the rows: every setting but the decision."""
        return self.model_dump(exclude={"decision_session"})

    def split(self) -> SplitConfig:
        return SplitConfig(
            horizon=self.horizon,
            min_train_sessions=self.min_train_sessions,
            validation_sessions=self.validation_sessions,
            refit_every="monthly",
            window=self.window,
            rolling_sessions=self.rolling_sessions,
            gate_sessions=self.gate_sessions,
        )

    def lightgbm(self) -> LightGBMConfig:
        return LightGBMConfig(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_data_in_leaf=self.min_data_in_leaf,
            feature_fraction=self.feature_fraction,
            num_boost_round=self.num_boost_round,
            early_stopping_rounds=self.early_stopping_rounds,
            seed=self.seed,
        )


def month_of(context: dg.AssetExecutionContext) -> tuple[str, dt.date, dt.date]:
    window = context.partition_time_window
    start = window.start.date()
    return f"{start:%Y-%m}", start, window.end.date() - dt.timedelta(days=1)


def against_champion(
    model: MonthlyModel, champion_booster, champion_cut: dt.date, horizon: int
) -> tuple[gate.PairedComparison, pl.DataFrame]:
    """Both models on the challenger's gate rows that the champion never saw either."""
    rows = gate.unseen_by(model.calibration, champion_cut, horizon)
    scored = rows.join(predict(model.trained.booster, rows), on=KEY).join(
        predict(champion_booster, rows).rename({"prediction": "champion_prediction"}), on=KEY
    )
    return gate.paired_rank_ic(scored, horizon), rows


def calibrate_returns(
    registry: MlflowResource,
    run_id: str,
    version: str,
    scored_gate: pl.DataFrame,
    bars: pl.DataFrame,
    config: TrainingConfig,
) -> dict:
    """The expected-return intervals' calibration on the gate slice (where labels exist and the
    model is out of sample), stored on the version for gold/predictions (`return_calibration`).
    ``bars``: the adjusted bars the refit read (nothing after its decision)."""
    return return_calibration.record(registry, run_id, version, scored_gate, bars, config.horizon)


def unchanged_refit(registry: MlflowResource, month: str, inputs: MonthlyInputs):
    """The version already registered for ``month`` from the same cut and inputs: nothing new
    to learn, so its result and stored verdict stand."""
    twins = registry.versions_tagged(refit_month=month, training_digest=inputs.digest)
    if not twins:
        return None
    twin = twins[-1]
    passed = twin.tags.get("gate") == "passed"
    why = f"cut {inputs.data_cut} and inputs unchanged: version {twin.version} has learnt them"
    reused = {"reused_verdict_of_version": str(twin.version), "reason": why}
    return [
        dg.MaterializeResult(
            metadata={
                "model_version": str(twin.version),
                "refit_skipped": True,
                "reason": why,
                "training_digest": inputs.digest,
                "data_cut": inputs.data_cut.isoformat(),
                "decision_session": inputs.decision.isoformat(),
                "mlflow_run_id": twin.run_id,
            }
        ),
        dg.AssetCheckResult(check_name=RANK_IC_FLOOR, passed=passed, metadata=reused),
        dg.AssetCheckResult(check_name=BEATS_CHAMPION, passed=passed, metadata=reused),
    ]


@dg.asset(
    key=CHALLENGER_KEY,
    deps=[  # every session before the month
        dg.AssetDep(table_key(t), partition_mapping=dg.AllPartitionMapping())
        for t in (tables.GOLD_DAILY_FEATURES, tables.ADJUSTED_DAILY_BARS)
    ],
    partitions_def=model_months,
    group_name=MODELS_GROUP,
    kinds={"lightgbm", "mlflow"},
    check_specs=[
        dg.AssetCheckSpec(RANK_IC_FLOOR, asset=CHALLENGER_KEY, blocking=True),
        dg.AssetCheckSpec(BEATS_CHAMPION, asset=CHALLENGER_KEY, blocking=True),
    ],
    pool="model_training",
)
def challenger(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    lake: LakeResource,
    mlflow_registry: MlflowResource,
):
    """Train the month's model (or a drift refit's) on what was known at its decision, gate it
    out of sample, log it with its lineage, register it and alias it challenger (or report the
    version that already learnt the same inputs)."""
    month, first, last = month_of(context)
    known_until = config.decision() or month_decision(first)
    versions = {
        "gold/daily_features": lake.version(tables.GOLD_DAILY_FEATURES),
        "silver/adjusted_daily_bars": lake.version(tables.ADJUSTED_DAILY_BARS),
    }
    began = time.perf_counter()
    features = lake.scan(tables.GOLD_DAILY_FEATURES, versions["gold/daily_features"])
    features = features.filter(pl.col("date") <= known_until).collect()
    bars = lake.scan(tables.ADJUSTED_DAILY_BARS, versions["silver/adjusted_daily_bars"])
    bars = bars.filter(pl.col("date") <= known_until).collect()
    try:
        inputs = prepare_month(
            features, bars, first, last, config.split(), config.settings(), config.decision()
        )
    except ValueError as exc:  # a decision outside the month, or before its features exist
        raise dg.Failure(str(exc)) from exc
    unchanged = unchanged_refit(mlflow_registry, month, inputs)
    if unchanged is not None:
        context.log.info(unchanged[0].metadata["reason"])
        yield from unchanged
        return
    model = train_prepared(inputs, config.lightgbm(), config.confidence_level)
    trained = model.trained
    seconds = time.perf_counter() - began
    scored = model.calibration.join(predict(trained.booster, model.calibration), on=KEY)
    own = ic_report(scored)["rank_ic"]
    rank_ic = own.mean
    champion = mlflow_registry.version_as_of(inputs.serves_from, "champion_from")
    comparison, beats, why = None, True, "no champion yet"
    if champion is not None:
        comparison, _ = against_champion(
            model,
            mlflow_registry.load_booster(champion.version),
            mlflow_registry.data_cut(champion),
            config.horizon,
        )
        beats, why = gate.promotes(comparison, config.min_paired_t, config.min_paired_days)
    floor_ok = bool(np.isfinite(rank_ic) and rank_ic >= config.min_validation_rank_ic)
    slices = model.slice_dates()

    tags = {"dagster_run_id": context.run.run_id, "refit_month": month}
    with mlflow_registry.run(f"refit {month} decided {inputs.decision}", tags) as run:
        mlflow.log_params({**config.model_dump(), **trained.fold.as_dict()})
        mlflow.log_params({f"delta_version.{k}": v for k, v in versions.items()})
        mlflow.log_metrics({**trained.metrics(), "train_seconds": seconds})
        mlflow.log_metrics({"gate_rank_ic_mean": rank_ic, "gate_rows": model.calibration.height})
        mlflow.log_metric("conformal_half_width", model.conformal.half_width)
        mlflow.log_dict({"features": trained.feature_names}, "features.json")
        sample = feature_matrix(model.calibration.head(5), trained.feature_names)
        info = mlflow.lightgbm.log_model(
            trained.booster,
            name="model",
            signature=infer_signature(sample, trained.booster.predict(sample)),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=mlflow_registry.model_name,
        )
    version = str(info.registered_model_version)
    client = mlflow_registry.client()
    version_tags = {
        "refit_month": month,
        "horizon": str(config.horizon),
        "interval_level": str(config.confidence_level),
        "conformal_half_width": repr(model.conformal.half_width),
        "calibration_rows": str(model.calibration.height),
        "best_iteration": str(trained.best_iteration),
        "delta_versions": json.dumps(versions),
        "training_digest": inputs.digest,
        **slices,
        "gate": "passed" if floor_ok and beats else "failed",
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(mlflow_registry.model_name, version, key, value)
    returns = calibrate_returns(mlflow_registry, run.info.run_id, version, scored, bars, config)
    mlflow_registry.set_alias(CHALLENGER, version)

    yield dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run.info.run_id,
            "refit_month": month,
            "refit_skipped": False,
            **{k: str(v) for k, v in trained.fold.as_dict().items()},
            **slices,
            "train_rows": trained.train_rows,
            "early_stopping_rows": trained.validation_rows,
            "gate_rows": model.calibration.height,
            "best_iteration": trained.best_iteration,
            "gate_rank_ic": float(rank_ic),
            "early_stopping_rank_ic (in sample)": float(trained.validation["rank_ic"].mean),
            "conformal_half_width (label units)": model.conformal.half_width,
            "train_seconds": round(seconds, 2),
            **return_calibration.metadata(returns),
            "training_digest": inputs.digest,
            **{f"delta_version {k}": v for k, v in versions.items()},
        }
    )
    yield dg.AssetCheckResult(
        check_name=RANK_IC_FLOOR,
        passed=floor_ok,
        metadata={
            "gate_rank_ic": float(rank_ic),
            "floor": config.min_validation_rank_ic,
            "gate_days": own.days,
            "calibration_dates": slices["calibration_dates"],
        },
    )
    yield dg.AssetCheckResult(
        check_name=BEATS_CHAMPION,
        passed=beats,
        metadata={
            "verdict": why,
            "champion_version": str(champion.version) if champion else "none yet",
            **(comparison.as_metadata() if comparison else {}),
            "min_paired_t": config.min_paired_t,
            "min_paired_days": config.min_paired_days,
        },
    )
