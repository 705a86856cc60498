"""The one ranking rule and the cross-section floor: mechanics on synthetic frames, the floor
of each replayable set on its real bars and the real point-in-time membership."""

import datetime as dt

import polars as pl

from stock_assets.bronze.datasets import load_dataset
from stock_assets.calendar import trading_days
from stock_assets.gold.signals import (
    SignalConfig,
    rank_signals,
    scaled_floor,
    session_cross_sections,
    tickers_seen,
)
from stock_assets.pit import members_on
from stock_assets.resources.sources import MembershipSource
from stock_assets.silver.index_membership import parse_intervals

D1, D2 = dt.date(2010, 6, 1), dt.date(2010, 6, 2)


def predictions(counts: dict[dt.date, int]) -> pl.DataFrame:
    rows = [
        {
            "instrument": f"I{i:03d}", "ticker": f"T{i:03d}", "date": day, "role": "champion",
            "prediction": float(i), "in_universe": True, "model_name": "m", "model_version": "1",
            "month": "2010-06",
        }
        for day, n in counts.items()
        for i in range(n)
    ]  # fmt: skip
    return pl.DataFrame(rows)


def universe(counts: dict[dt.date, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"date": d, "index": "sp500", "ticker": f"T{i:03d}"}
            for d, n in counts.items()
            for i in range(n)
        ]  # noqa: E501
    )


def test_the_floor_is_the_larger_of_min_names_and_a_share_of_the_days_members():
    frame = predictions({D1: 120, D2: 60})
    sessions = session_cross_sections(frame, universe({D1: 200, D2: 200}), 50, 0.5)
    assert sessions.select("date", "names", "members", "required", "thin").rows() == [
        (D1, 120, 200, 100, False),
        (D2, 60, 200, 100, True),  # 60 names >= 50, but fewer than half of 200 members
    ]
    signals = rank_signals(frame, 20, sessions)
    assert signals["date"].unique().to_list() == [D1]  # the thin session has no row at all
    assert signals.height == 120


def test_the_long_leg_is_min_k_and_half_the_names_with_weights_one_over_k():
    signals = rank_signals(predictions({D1: 30}), 20)
    assert (signals["side"] == "long").sum() == 15 == (signals["side"] == "short").sum()
    assert abs(signals.filter(pl.col("side") == "long")["weight"].sum() - 1.0) < 1e-12
    assert signals.filter(pl.col("rank") == 1)["instrument"].item() == "I029"


def test_the_floor_defaults_follow_the_environment(monkeypatch):
    assert (SignalConfig().min_names, SignalConfig().min_universe_share) == (50, 0.5)
    monkeypatch.setenv("STOCK_SIGNALS_MIN_NAMES", "7")
    assert SignalConfig().min_names == 7


def test_a_small_sets_floor_is_half_its_tickers_and_a_large_sets_floor_is_unchanged():
    frame = predictions({D1: 12, D2: 9})
    members = universe({D1: 500, D2: 500})  # the index has 500 members, the set 20 tickers
    small = session_cross_sections(frame, members, 50, 0.5, set_size=20)
    assert small.select("date", "required", "thin").rows() == [(D1, 10, False), (D2, 10, True)]
    large = predictions({D1: 300, D2: 240})
    capped = session_cross_sections(large, members, 50, 0.5, set_size=524)
    assert capped.drop("required").equals(
        session_cross_sections(large, members, 50, 0.5).drop("required")
    )
    assert capped["required"].to_list() == [250, 250] and capped["thin"].to_list() == [False, True]
    assert scaled_floor(100, 0.5, 20) == 10 and scaled_floor(100, 0.5, 524) == 100


def test_a_sessions_floor_counts_only_tickers_predicted_by_that_session():
    """The cap reads the data set's size as known at each close: tickers first predicted
    later (more rows after t) move no earlier session's floor."""
    first = pl.Series([D1] * 12 + [D2] * 8)  # 12 tickers by D1, 20 by D2
    sizes = tickers_seen(first, pl.Series([D1, D2, D1]))
    assert sizes.rows() == [(D1, 12), (D2, 20)]
    frame = predictions({D1: 6, D2: 9})
    members = universe({D1: 500, D2: 500})
    floors = session_cross_sections(frame, members, 50, 0.5, sizes)
    assert floors.select("date", "required", "thin").rows() == [(D1, 6, False), (D2, 10, True)]
    later = tickers_seen(pl.concat([first, pl.Series([D2] * 30)]), pl.Series([D1, D2]))
    again = session_cross_sections(frame, members, 50, 0.5, later)
    assert again.row(0) == floors.row(0)  # D1 unchanged by tickers that appeared on D2


def _real_sessions(name: str, start: dt.date, end: dt.date, drop: int = 0) -> pl.DataFrame:
    """Each member's champion row on the real set's bars and the real point-in-time S&P 500
    membership (index-constitution), ``drop`` members left out of the last session."""
    intervals = parse_intervals(MembershipSource().intervals(), end)[0]
    members = members_on(intervals, trading_days(start, end))
    bars = load_dataset(name).filter(pl.col("date").is_between(start, end))
    rows = bars.join(members.select("date", "ticker"), on=["date", "ticker"]).select(
        "date", "ticker", instrument="ticker", role=pl.lit("champion"),
        prediction=pl.col("close"), in_universe=pl.lit(True),
    )  # fmt: skip
    last = rows.filter(pl.col("date") == end).head(drop)
    rows = rows.join(last, on=["date", "ticker"], how="anti")
    set_size = bars["ticker"].n_unique()
    return session_cross_sections(rows, members, 50, 0.5, set_size)


def test_the_20_name_set_is_ranked_on_real_membership_and_thin_sessions_stay_flagged():
    start, end = dt.date(2022, 10, 3), dt.date(2022, 12, 28)
    sessions = _real_sessions("sp500_1990_adjclose", start, end)
    assert sessions.height > 55 and not sessions["thin"].any()  # 19 members of 503, floor 10
    assert sessions["required"].unique().to_list() == [10]
    last = _real_sessions("sp500_1990_adjclose", start, end, drop=10).row(-1, named=True)
    assert (last["names"], last["thin"]) == (9, True)  # a half-missing session still is thin


def test_the_sp500_sets_floor_on_real_membership_is_what_it_was():
    start, end = dt.date(2010, 6, 1), dt.date(2010, 8, 20)
    sessions = _real_sessions("sp500_2009", start, end)
    old = (pl.col("members") * 0.5).ceil().cast(pl.Int64).clip(lower_bound=50)
    assert sessions["required"].to_list() == sessions.select(old).to_series().to_list()
    assert sessions["required"].min() >= 246 and not sessions["thin"].any()
