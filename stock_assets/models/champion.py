"""``models/champion``: promotion of the month's challenger, only when its gate passed.

Dagster runs this after `challenger` in the same run only if the challenger's blocking checks
passed; run on its own (from the UI), it re-reads the verdict the checks left on the registered
version, so a failed gate cannot be promoted by hand either. A version that scored enough live
days in shadow, with outcomes known before the decision, must also have beaten the champion
there (`shadow_comparison.live_verdict`).
"""

import datetime as dt

import dagster as dg

from stock_assets.models.challenger import CHALLENGER_KEY, MODELS_GROUP, model_months
from stock_assets.models.shadow_comparison import live_verdict, shadow_results
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import CHAMPION, MlflowResource
from stock_assets.resources.sources import today_utc

CHAMPION_KEY = dg.AssetKey(["models", "champion"])


class PromotionConfig(dg.Config):
    """``decision_date`` (YYYY-MM-DD, default today): shadow outcomes count only when their
    label was known before it; set it to replay a past decision."""

    decision_date: str = ""

    def decision(self) -> dt.date:
        return dt.date.fromisoformat(self.decision_date) if self.decision_date else today_utc()


@dg.asset(
    key=CHAMPION_KEY,
    deps=[CHALLENGER_KEY],
    partitions_def=model_months,
    group_name=MODELS_GROUP,
    kinds={"mlflow"},
)
def champion(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    lake: LakeResource,
    mlflow_registry: MlflowResource,
):
    """Alias the month's challenger ``champion`` and record from which month it serves."""
    month = context.partition_time_window.start.strftime("%Y-%m")
    candidates = [v for v in mlflow_registry.versions() if v.tags.get("refit_month") == month]
    if not candidates:
        raise dg.Failure(f"no challenger registered for {month}: materialize models/challenger")
    candidate = max(candidates, key=lambda v: int(v.version))
    if candidate.tags.get("gate") != "passed":
        raise dg.Failure(
            f"version {candidate.version} for {month} failed its gate "
            f"({candidate.tags.get('gate', 'not evaluated')}): the champion stays"
        )
    decision = config.decision()
    live_ok, live = live_verdict(shadow_results(lake, decision), str(candidate.version))
    if not live_ok:
        raise dg.Failure(f"version {candidate.version} for {month}: {live}; the champion stays")
    previous = mlflow_registry.version_for(CHAMPION)
    latest = mlflow_registry.version_as_of("9999-12", "champion_from")  # newest month promoted
    client = mlflow_registry.client()
    client.set_model_version_tag(
        mlflow_registry.model_name, candidate.version, "champion_from", month
    )
    # a backfill promoting an earlier month serves that month, and leaves the live alias alone
    if latest is None or month >= latest.tags["champion_from"]:
        mlflow_registry.set_alias(CHAMPION, candidate.version)
    return dg.MaterializeResult(
        metadata={
            "champion_version": str(candidate.version),
            "previous_champion": previous or "none",
            "champion_from": month,
            "mlflow_run_id": candidate.run_id,
            "shadow_evidence": live,
            "decision_date": decision.isoformat(),
        }
    )
