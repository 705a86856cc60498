"""The one ranking rule and the cross-section floor (mechanics, synthetic frames)."""

import datetime as dt

import polars as pl

from stock_assets.gold.signals import SignalConfig, rank_signals, session_cross_sections

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
