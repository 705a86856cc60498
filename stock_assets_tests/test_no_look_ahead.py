"""No look-ahead, end to end: nothing dated <= t moves when every input after t changes.

t = 2010-06-17 lies inside the early-stopping slice of August's monthly refit, whose inputs
must therefore change; September's refit trains on rows up to 2010-06-18 and stops early and
calibrates on later days, so its model must change; June's (data cut 2010-05-27) must not.
The whole chain runs twice on the real S&P 500 year with the packaged alternative data: once
as recorded, once with every input after t perturbed and rows after t removed and added (prices
drift, volumes scale, some tickers stop trading, a new one lists, KO splits 2:1 after t; macro
values move and revisions arrive; a later earnings and membership vintage moves dates, adds
entries and rewrites past intervals; more news). Corporate actions are re-detected from each
world's bars. Adjusted bars, features, June's model and its predictions with intervals dated
<= t must be bit-identical; August's and September's models must change, so the perturbation
provably reaches a model.

August's booster is not guaranteed to change, and the test says why rather than hoping: its
training rows all end before t (identical in both worlds), and LightGBM builds its trees from
the training rows alone (the validation set only reuses their bins), so both worlds grow one
and the same sequence of trees; early stopping merely cuts it at the round where the l2 on the
validation slice stops improving. Perturbing the slice's rows after t moves that curve but need
not move its minimum. What provably reaches August's model is asserted instead: the common
prefix of trees is identical (the cut is the only channel into the booster), the validation
curve differs, the booster differs exactly when the chosen round does, and the conformal
calibration, fitted on the gate slice after t, moves its half-width.
"""

import datetime as dt
from dataclasses import asdict

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stock_assets.gold.assemble import assemble
from stock_assets.models.challenger import TrainingConfig
from stock_assets.models.conformal import predict_intervals
from stock_assets.models.training import MonthlyModel, prepare_month, train_month, train_prepared
from stock_assets.models.walk_forward import feature_matrix, training_rows
from stock_assets.pit import adjust_bars
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated
from stock_assets.silver.earnings_calendar import merge_calendar
from stock_assets.silver.index_membership import merge_intervals
from stock_assets_tests.conftest import FIRST, bars_between
from stock_assets_tests.point_in_time import (
    ARTICLES,
    ContextSources,
    make_context,
    market_sentiment,
    packaged_context_sources,
)

T = dt.date(2010, 6, 17)
JUNE = (dt.date(2010, 6, 1), dt.date(2010, 6, 30))  # refit cut before t: must not move
AUGUST = (dt.date(2010, 8, 1), dt.date(2010, 8, 31))  # t inside its early stopping: must move
SEPTEMBER = (dt.date(2010, 9, 1), dt.date(2010, 9, 30))  # trains on t + 1: must move
FIRST_SNAPSHOT = FIRST - dt.timedelta(days=1)  # the lake's first vintage of the reference tables
LATER_SNAPSHOT = T + dt.timedelta(days=5)  # a vintage first seen after t
KO_SPLIT = dt.date(2010, 6, 22)  # a made-up 2:1 split after t, to be re-detected
NEW_TICKER = "ZNEW"  # lists after t
PRICES = ("open", "high", "low", "close")
AFTER_T = pl.col("date") > T


def perturbed_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """After t: prices drift per ticker (up to +-0.3% a day, no overnight gap), volumes x1.5,
    a seventh of the tickers stop trading, KO splits 2:1 and a new ticker lists."""
    days_after_t = (pl.col("date") - pl.lit(T)).dt.total_days().cast(pl.Float64)
    drift = 1 + ((pl.col("ticker").hash(5) % 7).cast(pl.Float64) - 3) / 1000 * days_after_t
    split = (pl.col("ticker") == "KO") & (pl.col("date") >= KO_SPLIT)
    moved = bars.with_columns(
        *(pl.when(AFTER_T).then(pl.col(p) * drift).otherwise(pl.col(p)) for p in PRICES),
        volume=pl.when(AFTER_T).then(pl.col("volume") * 1.5).otherwise(pl.col("volume")),
    ).with_columns(
        *(pl.when(split).then(pl.col(p) / 2).otherwise(pl.col(p)) for p in PRICES),
        volume=pl.when(split).then(pl.col("volume") * 2).otherwise(pl.col("volume")),
    )
    halted = AFTER_T & (pl.col("ticker").hash(3) % 7 == 0) & (pl.col("ticker") != "KO")
    listed = bars.filter(pl.col("ticker") == "MSFT", AFTER_T).with_columns(
        *(pl.col(p) * 0.5 for p in PRICES), ticker=pl.lit(NEW_TICKER)
    )
    moved = moved.with_columns(pl.col("volume").round().cast(pl.Int64))
    return pl.concat([moved.filter(~halted), listed]).sort("date", "ticker")


def recorded_sources(packaged: ContextSources) -> ContextSources:
    """The packaged data as a lake holds it: earnings and membership as first vintages."""
    empty = pl.DataFrame()
    return packaged._replace(
        earnings=merge_calendar(empty, packaged.earnings, FIRST_SNAPSHOT),
        intervals=merge_intervals(empty, packaged.intervals, FIRST_SNAPSHOT),
    )


def perturbed_sources(recorded: ContextSources, packaged: ContextSources, bars) -> ContextSources:
    """Every context input known after t changed, with rows added and removed."""
    macro = recorded.macro
    revisions = (  # each series' last three values known by t, revised after t
        macro.filter(pl.col("known_from") <= T)
        .sort("known_from")
        .group_by("series", maintain_order=True)
        .tail(3)
        .with_columns(value=pl.col("value") + 1, known_from=pl.lit(T + dt.timedelta(days=2)))
    )
    macro = pl.concat([
        macro.with_columns(
            value=pl.when(pl.col("known_from") > T).then(pl.col("value") * -5 + 1)
            .otherwise(pl.col("value"))
        ),
        revisions.select(macro.columns),
    ])  # fmt: skip
    earnings = packaged.earnings.with_columns(  # every date after t moved two days
        earnings_date=pl.when(pl.col("earnings_date") > T)
        .then(pl.col("earnings_date") + pl.duration(days=2))
        .otherwise(pl.col("earnings_date"))
    )
    tickers = sorted(bars["ticker"].unique())
    announced = pl.DataFrame(  # new releases within the announcement window of t
        {"ticker": tickers[:40], "earnings_date": [T + dt.timedelta(days=10)] * 40}
    ).with_columns(source=pl.lit("later vintage"))
    earnings = pl.concat([earnings, announced.cast(earnings.schema)]).unique(
        ["ticker", "earnings_date"]
    )
    intervals = packaged.intervals
    open_members = intervals.filter(pl.col("member_until").is_null())["ticker"].head(15)
    rewritten = intervals.with_columns(  # past memberships closed, later starts moved to t + 1
        member_until=pl.when(pl.col("ticker").is_in(open_members.to_list()))
        .then(pl.lit(dt.date(2010, 3, 1)))
        .otherwise(pl.col("member_until")),
        member_from=pl.when(pl.col("member_from") > T)
        .then(pl.lit(T + dt.timedelta(days=1)))
        .otherwise(pl.col("member_from")),
    )
    joined = pl.DataFrame(
        {"ticker": [NEW_TICKER, *tickers[-10:]], "member_from": [dt.date(2010, 1, 4)] * 11}
    ).with_columns(index=pl.lit(intervals["index"][0]), name=pl.col("ticker"), member_until=None)
    intervals = pl.concat([rewritten, joined.select(intervals.columns).cast(intervals.schema)])
    later_news = [
        ("2010/6/18 10:00", "Crash fears", "Losses, default and litigation"),
        ("2010/7/6 10:00", "Rally", "Strong growth and record profit"),
    ]
    return ContextSources(
        macro,
        merge_calendar(recorded.earnings, earnings, LATER_SNAPSHOT),
        merge_intervals(recorded.intervals, intervals, LATER_SNAPSHOT),
        market_sentiment([*ARTICLES[:2], *later_news]),
    )


def chain(bars: pl.DataFrame, sources: ContextSources) -> dict:
    """Events re-detected, adjusted bars, features, August's refit inputs, and June's,
    August's and September's refits."""
    events = build_corporate_actions(bars, load_curated())
    adjusted = adjust_bars(bars, events)
    start, end = adjusted["date"].min(), adjusted["date"].max()
    features = assemble(adjusted, start, end, make_context(sources, start, end, adjusted))
    config = TrainingConfig()
    refits = {
        month: train_month(
            features, adjusted, *month, config.split(), config.lightgbm(), config.confidence_level
        )
        for month in (JUNE, SEPTEMBER)
    }
    settings = {"lightgbm": asdict(config.lightgbm()), "confidence_level": config.confidence_level}
    august = prepare_month(features, adjusted, *AUGUST, config.split(), settings)
    refits[AUGUST] = train_prepared(august, config.lightgbm(), config.confidence_level)
    return {
        "events": events,
        "adjusted": adjusted,
        "features": features,
        "refits": refits,
        "august_inputs": august,
    }


def upto_t(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(~AFTER_T).sort("date", "instrument")


def scored_upto_t(model: MonthlyModel, features: pl.DataFrame) -> pl.DataFrame:
    """The month's predictions and conformal intervals dated <= t."""
    rows = upto_t(features.filter(pl.col("date") >= JUNE[0]))
    return predict_intervals(model.conformal, rows)


@pytest.fixture(scope="module")
def worlds(sp500):
    """The recorded chain and the perturbed one, on every other ticker (a real cross-section
    of about 260 names; half the training time)."""
    tickers = sorted(sp500["ticker"].unique())[::2]
    bars = bars_between(sp500, tickers=sorted({*tickers, "KO", "MSFT"}))
    packaged = packaged_context_sources()
    recorded = recorded_sources(packaged)
    perturbed = perturbed_sources(recorded, packaged, bars)
    inputs = {"recorded": (bars, recorded), "perturbed": (perturbed_bars(bars), perturbed)}
    return {name: (*pair, chain(*pair)) for name, pair in inputs.items()}


def test_every_input_after_t_really_differs_in_rows_and_values(worlds):
    (bars, sources, _), (bars_p, sources_p, _) = worlds["recorded"], worlds["perturbed"]
    assert bars.filter(~AFTER_T).equals(bars_p.filter(~AFTER_T))
    assert bars_p.filter(AFTER_T).height != bars.filter(AFTER_T).height
    for name, frame in sources._asdict().items():
        assert getattr(sources_p, name).height != frame.height, name
    assert sources_p.earnings["first_seen"].max() == LATER_SNAPSHOT
    assert sources_p.intervals["dropped_on"].max() == LATER_SNAPSHOT


def test_corporate_actions_known_by_t_are_the_same_and_the_later_split_is_re_detected(worlds):
    events, events_p = (worlds[w][2]["events"] for w in ("recorded", "perturbed"))
    known = pl.col("known_from") <= T
    order = ["instrument", "effective_date", "action"]
    assert events.filter(known).sort(order).equals(events_p.filter(known).sort(order))
    ko = events_p.filter(pl.col("instrument") == "KO", pl.col("effective_date") == KO_SPLIT)
    assert ko.height == 1 and ko["detected_ratio"].round(1).to_list() == [2.0]
    assert events.filter(
        pl.col("instrument") == "KO", pl.col("effective_date") == KO_SPLIT
    ).is_empty()


def test_adjusted_bars_and_features_up_to_t_are_bit_identical(worlds):
    recorded, perturbed = worlds["recorded"][2], worlds["perturbed"][2]
    for table in ("adjusted", "features"):
        before = upto_t(recorded[table])
        assert before.height > 40_000, table  # about 260 instruments x 200 sessions
        assert_frame_equal(upto_t(perturbed[table]), before, check_exact=True)
        after = [w[table].filter(AFTER_T) for w in (recorded, perturbed)]
        assert after[0].height != after[1].height, table  # rows after t, not only values


def test_june_model_predictions_and_intervals_up_to_t_are_bit_identical(worlds):
    recorded, perturbed = worlds["recorded"][2], worlds["perturbed"][2]
    june, june_p = recorded["refits"][JUNE], perturbed["refits"][JUNE]
    assert june.inputs.data_cut < T
    assert june.inputs.digest == june_p.inputs.digest
    assert june.trained.booster.model_to_string() == june_p.trained.booster.model_to_string()
    assert june.conformal.half_width == june_p.conformal.half_width
    scored = scored_upto_t(june, recorded["features"])
    assert scored.height > 2_000 and scored["date"].max() == T
    assert (scored["upper"] > scored["lower"]).all()
    assert_frame_equal(scored_upto_t(june_p, perturbed["features"]), scored, check_exact=True)


def test_refits_that_learn_from_after_t_change(worlds):
    recorded, perturbed = worlds["recorded"][2], worlds["perturbed"][2]
    august, august_p = recorded["august_inputs"], perturbed["august_inputs"]
    assert august.fold.validation_start <= T <= august.fold.validation_end
    assert august.digest != august_p.digest  # its early-stopping rows moved
    september, september_p = recorded["refits"][SEPTEMBER], perturbed["refits"][SEPTEMBER]
    assert september.trained.fold.train_end > T
    assert september.inputs.digest != september_p.inputs.digest
    booster, booster_p = september.trained.booster, september_p.trained.booster
    assert booster.model_to_string() != booster_p.model_to_string()
    assert september.conformal.half_width != september_p.conformal.half_width
    rows = upto_t(recorded["features"].filter(pl.col("date") >= JUNE[0]))
    assert not predict_intervals(september.conformal, rows).equals(
        predict_intervals(september_p.conformal, rows)
    )


def validation_curve(model: MonthlyModel) -> list[float]:
    """The early-stopping l2 of ``model``'s booster on its own validation slice, per round."""
    trained, inputs = model.trained, model.inputs
    rows = training_rows(inputs.labelled, inputs.fold, "validation")
    matrix, label = feature_matrix(rows, trained.feature_names), rows["label"].to_numpy()
    rounds = trained.booster.num_trees()
    return [
        float(((trained.booster.predict(matrix, num_iteration=k) - label) ** 2).mean())
        for k in range(1, rounds + 1)
    ]


def test_august_early_stops_on_t_and_its_model_changes_only_through_the_slice(worlds):
    """See the module docstring: the booster moves only through the stopping round."""
    august, august_p = (worlds[w][2]["refits"][AUGUST] for w in ("recorded", "perturbed"))
    fold = august.trained.fold
    assert fold.validation_start <= T <= fold.validation_end < fold.gate_start
    assert august.inputs.data_cut > T
    booster, booster_p = august.trained.booster, august_p.trained.booster
    common = min(booster.num_trees(), booster_p.num_trees())
    assert common >= 1
    assert booster.model_to_string(num_iteration=common) == booster_p.model_to_string(
        num_iteration=common
    )  # one sequence of trees: training saw nothing after t
    curve, curve_p = validation_curve(august), validation_curve(august_p)
    assert curve[:common] != curve_p[:common]  # the rows after t reached the stopping decision
    same_round = august.trained.best_iteration == august_p.trained.best_iteration
    assert (booster.model_to_string() == booster_p.model_to_string()) == same_round
    assert august.calibration["date"].min() > T
    assert august.conformal.half_width != august_p.conformal.half_width
    rows = upto_t(worlds["recorded"][2]["features"].filter(pl.col("date") >= JUNE[0]))
    assert not predict_intervals(august.conformal, rows).equals(
        predict_intervals(august_p.conformal, rows)
    )
