"""The return-interval bench calibrates only on labels known before each predicted day (real
S&P 500 bars, one monthly fold of about 60 names)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from model_eval_clock import Clock  # noqa: E402
from model_eval_run import train_ours  # noqa: E402
from model_eval_sets import adjusted_bars, context_of, load_sources, plan_for, prepare  # noqa: E402
from return_intervals import fold_intervals  # noqa: E402

from stock_assets.models.return_intervals import trailing_volatility  # noqa: E402


@pytest.fixture(scope="module")
def one_fold():
    plan = dataclasses.replace(plan_for("sp500_2009", "shipped"), thin="flag")
    adjusted = adjusted_bars("sp500_2009", 60)
    data = prepare(adjusted, context_of(adjusted, plan, load_sources()), plan, 1, Clock())
    ours = train_ours(data, plan.training.lightgbm(), Clock())
    return data, ours, trailing_volatility(adjusted, plan.split.horizon)


@pytest.mark.parametrize("scale", ["volatility", "fitted"])
def test_every_calibration_ends_before_what_it_predicts(one_fold, scale):
    data, ours, volatility = one_fold
    fold = ours.trained[0].fold
    gate, gate_maps = fold_intervals(data, ours, volatility, 1, "gate", scale)
    rolling, rolling_maps = fold_intervals(data, ours, volatility, 1, "rolling", scale)
    assert len(gate_maps) == 1 and gate_maps[0]["calibration"].endswith(str(fold.gate_end))
    sessions = sorted(rolling["date"].unique().to_list())
    assert len(rolling_maps) == len(sessions) > 15  # one calibration per predicted day
    for mapping in gate_maps + rolling_maps:
        first = dt.date.fromisoformat(mapping["predicted"].split("..")[0])
        assert dt.date.fromisoformat(mapping["labels_known_until"]) < first
    # later days calibrate on the month's own earlier days, the first on the gate slice alone
    assert rolling_maps[0]["calibration"] == gate_maps[0]["calibration"]
    assert rolling_maps[-1]["calibration"].split("..")[1] > str(fold.test_start)
    key = ["instrument", "date"]
    assert gate.select(key).sort(key).equals(rolling.select(key).sort(key))
    assert gate["expected_return"].is_not_null().sum() > 0.9 * gate.height
    assert not gate.filter(pl.col("date") < fold.test_start).height
