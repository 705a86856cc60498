"""A split is known when it is known: nothing dated <= t depends on a bar dated after t.

A made-up 2:1 split of KO dated t = 2010-06-17 inside the real sp500_2009 year (prices from t on
halved, volumes doubled). Each family below shares every bar dated <= t and differs after t:
every bar after t perturbed, KO's later volumes cut, or the rows after t or t + 1 removed (so
the row count changes, not only values). Corporate actions are re-detected from each variant's
bars, then the adjusted bars and the features (the pure functions `gold/daily_features` runs)
dated <= t must be bit-identical, and so must June's model and its predictions dated <= t.
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.gold.assemble import Context, assemble
from stock_assets.gold.daily_features import DAILY_FEATURES_CHECKS, daily_features
from stock_assets.models.challenger import TrainingConfig
from stock_assets.models.training import train_month
from stock_assets.models.walk_forward import predict
from stock_assets.partitions import range_tags
from stock_assets.pit import adjust_bars, members_on
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import bars_between

T = dt.date(2010, 6, 17)
T1, T2 = dt.date(2010, 6, 18), dt.date(2010, 6, 21)  # the next two sessions with bars
FEATURES_FROM = dt.date(2010, 6, 10)
HISTORY_FROM = dt.date(2010, 1, 4)  # the same history start for every variant (TA-Lib warm-up)
PRICES = ("open", "high", "low", "close")
KO = pl.col("ticker") == "KO"


def ko_split(bars: pl.DataFrame, volume_on_t: float, volume_after_t: float) -> pl.DataFrame:
    """KO splits 2:1 on T: prices from T on halved; volume scaled on T and after T."""
    scale = (
        pl.when(KO & (pl.col("date") == T))
        .then(volume_on_t)
        .when(KO & (pl.col("date") > T))
        .then(volume_after_t)
        .otherwise(1.0)
    )
    return bars.with_columns(
        *(pl.when(KO & (pl.col("date") >= T)).then(pl.col(c) / 2).otherwise(pl.col(c))
          for c in PRICES),
        volume=(pl.col("volume") * scale).round().cast(pl.Int64),
    )  # fmt: skip


def every_bar_after_t_perturbed(bars: pl.DataFrame) -> pl.DataFrame:
    later = pl.col("date") > T
    factor = 1 + (pl.col("ticker").hash(7) % 61 - 30).cast(pl.Float64) / 100  # 0.70 .. 1.30
    return bars.with_columns(
        *(pl.when(later).then(pl.col(c) * factor).otherwise(pl.col(c)) for c in PRICES),
        volume=pl.when(later).then(pl.col("volume") * 3).otherwise(pl.col("volume")),
    ).filter(~(later & (pl.col("ticker").hash(3) % 5 == 0)))  # and a fifth of those rows gone


def variants(split: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Same bars up to T, different after: full, KO's volume x0.4, perturbed, cut at T / T + 1."""
    return {
        "all bars": split,
        "KO volume after t x0.4": split.with_columns(
            volume=pl.when(KO & (pl.col("date") > T))
            .then((pl.col("volume") * 0.4).round().cast(pl.Int64))
            .otherwise(pl.col("volume"))
        ),
        "every bar after t perturbed": every_bar_after_t_perturbed(split),
        "bars up to t": split.filter(pl.col("date") <= T),
        "bars up to t+1": split.filter(pl.col("date") <= T1),
    }


def pipeline(bars: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Events re-detected from the bars, adjusted bars, and the features from FEATURES_FROM."""
    events = build_corporate_actions(bars, load_curated())
    adjusted = adjust_bars(bars, events)
    window = adjusted.filter(pl.col("date") >= HISTORY_FROM)
    first_bars = adjusted.group_by("instrument").agg(pl.col("date").min().alias("first_date"))
    features = assemble(window, FEATURES_FROM, bars["date"].max(), Context(first_bars=first_bars))
    return events, adjusted, features


def ko_event(events: pl.DataFrame) -> dict:
    rows = events.filter(pl.col("instrument") == "KO", pl.col("effective_date") == T)
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def upto_t(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("date") <= T).sort("date", "instrument")


@pytest.fixture(scope="module")
def real_bars(sp500) -> pl.DataFrame:
    assert sessions_before(T, 1) == dt.date(2010, 6, 16)
    return bars_between(sp500, dt.date(2009, 8, 21), None)


@pytest.fixture(scope="module")
def confirmed_on_t(real_bars):
    """KO's volume doubles with the split on T: the event day's volume already confirms it."""
    return {name: pipeline(bars) for name, bars in variants(ko_split(real_bars, 2, 2)).items()}


@pytest.fixture(scope="module")
def confirmed_later(real_bars):
    """KO's volume on T is low (x0.8): undecided on T, confirmed once T + 1's volume exists."""
    split = ko_split(real_bars, 0.8, 2)
    return {name: pipeline(split.filter(pl.col("date") <= end)) for name, end in (
        ("bars up to t", T), ("bars up to t+1", T1), ("all bars", split["date"].max()),
    )}  # fmt: skip


def test_a_split_confirmed_by_its_own_day_is_known_on_t_whatever_comes_after(confirmed_on_t):
    for name, (events, adjusted, _) in confirmed_on_t.items():
        event = ko_event(events)
        assert (event["action"], event["status"], event["known_from"]) == ("split", "detected", T)
        assert event["ratio"] == 2.0 and event["volume_ratio"] > 2, name
        ko = adjusted.filter(pl.col("instrument") == "KO", pl.col("date") == T).row(0, named=True)
        assert ko["set_aside"] is None and ko["cum_factor"] == 2.0
        assert ko["adj_close"] == pytest.approx(52.36, abs=0.01), name  # the unsplit price


def test_a_split_confirmed_later_is_set_aside_until_its_evidence_exists(confirmed_later):
    pending = ko_event(confirmed_later["bars up to t"][0])
    assert (pending["action"], pending["status"]) == ("unexplained_gap", "needs_review")
    for name in ("bars up to t+1", "all bars"):
        event = ko_event(confirmed_later[name][0])
        assert (event["action"], event["known_from"]) == ("split", T1), name
    adjusted = confirmed_later["all bars"][1].filter(pl.col("instrument") == "KO")
    on = {row["date"]: row for row in adjusted.iter_rows(named=True)}
    assert on[T]["adj_close"] is None and on[T]["set_aside"].startswith("price jump on 2010-06-17")
    assert on[T1]["set_aside"] is None and on[T1]["cum_factor"] == 2.0  # applied from T + 1 on
    assert abs(on[T1]["adj_open"] / on[sessions_before(T, 1)]["adj_close"] - 1) < 0.05
    features = confirmed_later["all bars"][2]
    assert not features.filter(pl.col("instrument") == "KO", pl.col("date") == T).height
    assert features.filter(pl.col("instrument") == "KO", pl.col("date") == T1).height == 1


@pytest.mark.parametrize("family", ["confirmed_on_t", "confirmed_later"])
def test_adjusted_bars_and_features_up_to_t_are_identical_whatever_comes_after(family, request):
    runs = request.getfixturevalue(family)
    _, base_adjusted, base_features = runs["all bars"]
    assert upto_t(base_features).height > 500  # every instrument's rows of 2010-06-10..t
    for name, (_, adjusted, features) in runs.items():
        assert upto_t(adjusted).equals(upto_t(base_adjusted)), name
        assert_frame_equal(upto_t(features), upto_t(base_features), check_exact=True)
        if name == "all bars":
            continue
        later = pl.col("date") > T
        assert adjusted.filter(later).height != base_adjusted.filter(later).height or not (
            adjusted.filter(later).equals(base_adjusted.filter(later))
        ), name  # the variant really differs after t


def test_the_decision_on_t_reaches_every_cross_section_of_the_day(confirmed_on_t, confirmed_later):
    """KO decided on T (in the cross-section) vs set aside on T (not in it): day T's
    cross-sectional z-scores of every other member move, so the identity above is not vacuous."""
    decided = upto_t(confirmed_on_t["all bars"][2]).filter(pl.col("date") == T)
    aside = upto_t(confirmed_later["all bars"][2]).filter(pl.col("date") == T)
    assert decided.height == aside.height + 1
    others = decided.filter(pl.col("instrument") != "KO")
    assert not others["cs_z_ROC5"].equals(aside["cs_z_ROC5"])


def test_the_features_asset_writes_no_row_for_a_set_aside_day_and_says_why(
    confirmed_later, tmp_path
):
    adjusted = confirmed_later["all bars"][1]
    tickers = sorted(adjusted["ticker"].unique())[:40] + ["KO"]
    adjusted = adjusted.filter(pl.col("ticker").is_in(tickers))
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.overwrite_dates(
        tables.ADJUSTED_DAILY_BARS, adjusted, adjusted["date"].min(), adjusted["date"].max()
    )
    run = [daily_features, DAILY_FEATURES_CHECKS.asset_check()]
    result = dg.materialize(
        run, resources={"lake": lake}, tags=range_tags(T.isoformat(), T1.isoformat())
    )
    assert result.success
    stored = lake.read_dates(tables.GOLD_DAILY_FEATURES, T, T1)
    assert stored.filter(pl.col("instrument") == "KO")["date"].to_list() == [T1]
    on_t = adjusted.filter(pl.col("date") == T)
    assert stored.filter(pl.col("date") == T).height == on_t.height - 1 > 30
    metadata = result.asset_materializations_for_node("gold__daily_features")[0].metadata
    assert metadata["rows_set_aside"].value == 1
    assert "| KO" in metadata["set_aside"].value and "price jump on 2010-06-17" in (
        metadata["set_aside"].value
    )


def test_the_june_model_and_its_predictions_up_to_t_are_identical_with_or_without_later_bars(
    real_bars,
):
    """The shipped training settings: June's model is trained on what was known before June 1,
    then scores June's sessions; with the bars after t removed (KO's split on t included) the
    model and every prediction dated 2010-06-01..t are bit-identical."""
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    config = TrainingConfig()
    june, june_end = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
    split = ko_split(real_bars, 2, 2)
    scored = {}
    for name, bars in (("all bars", split), ("bars up to t", split.filter(pl.col("date") <= T))):
        adjusted = adjust_bars(bars, build_corporate_actions(bars, load_curated()))
        context = Context(
            universe=members_on(intervals, sorted(adjusted["date"].unique())),
            first_bars=adjusted.group_by("instrument").agg(
                pl.col("date").min().alias("first_date")
            ),
        )
        features = assemble(adjusted, adjusted["date"].min(), T, context)
        model = train_month(
            features, adjusted, june, june_end, config.split(), config.lightgbm(),
            config.confidence_level,
        )  # fmt: skip
        june_rows = features.filter(pl.col("date") >= june)
        scored[name] = (
            model.trained.booster.model_to_string(),
            predict(model.trained.booster, june_rows).sort("date", "instrument"),
        )
    (model_all, all_bars), (model_upto_t, upto_t_bars) = scored.values()
    assert model_all == model_upto_t
    assert all_bars.height > 5000 and all_bars.equals(upto_t_bars)
    assert all_bars.filter(pl.col("ticker") == "KO", pl.col("date") == T).height == 1
