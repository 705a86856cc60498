"""``models/champion``: promotion of the month's challenger, only when its gate passed.

Dagster runs this after `challenger` in the same run only if the challenger's blocking checks
passed; run on its own (from the UI), it re-reads the verdict the checks left on the registered
version, so a failed gate cannot be promoted by hand either. A version that scored enough live
days in shadow, with outcomes known before the decision, must also have beaten the champion
there (`shadow_comparison.live_verdict`).

The version promoted is the one the month's challenger last reported (a drift refit's, or the
version an unchanged refit pointed at), and it is champion from the session it serves from
(`serves_from`, a date: the month's first session, or the session after a drift refit's
decision). Predictions before that date keep the earlier champion.
"""

import datetime as dt

import dagster as dg

from stock_assets.models.challenger import CHALLENGER_KEY, MODELS_GROUP, model_months
from stock_assets.models.registry import CHAMPION_FROM, SERVES_FROM, starts
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
    """Alias the month's challenger ``champion`` and record from which session it serves."""
    month = context.partition_time_window.start.strftime("%Y-%m")
    candidates = [v for v in mlflow_registry.versions() if v.tags.get("refit_month") == month]
    if not candidates:
        raise dg.Failure(f"no challenger registered for {month}: materialize models/challenger")
    reported = last_reported(context)
    by_number = {str(v.version): v for v in candidates}
    candidate = by_number.get(reported) or max(candidates, key=lambda v: int(v.version))
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
    latest = mlflow_registry.version_as_of(dt.date.max, CHAMPION_FROM)  # newest promotion
    serves_from = starts(candidate, SERVES_FROM)
    client = mlflow_registry.client()
    client.set_model_version_tag(
        mlflow_registry.model_name, candidate.version, CHAMPION_FROM, serves_from.isoformat()
    )
    # a backfill promoting an earlier refit serves from its date, and leaves the live alias alone
    if latest is None or serves_from >= starts(latest, CHAMPION_FROM):
        mlflow_registry.set_alias(CHAMPION, candidate.version)
    return dg.MaterializeResult(
        metadata={
            "champion_version": str(candidate.version),
            "previous_champion": previous or "none",
            "champion_from": serves_from.isoformat(),
            "refit_month": month,
            "mlflow_run_id": candidate.run_id,
            "shadow_evidence": live,
            "decision_date": decision.isoformat(),
        }
    )


def last_reported(context: dg.AssetExecutionContext) -> str | None:
    """The model version the partition's latest challenger materialization reported (None when
    this instance has none, e.g. a registry filled elsewhere)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHALLENGER_KEY, asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if not records:
        return None
    version = records[0].asset_materialization.metadata.get("model_version")
    return str(version.value) if version is not None else None
