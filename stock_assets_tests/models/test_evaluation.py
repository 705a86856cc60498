"""IC, portfolio accounting and return metrics: hand-made cases, empyrical, the real year."""

import datetime as dt
import math

import empyrical
import numpy as np
import polars as pl
import pytest

from stock_assets.models.evaluation import (
    CostModel,
    annual_return,
    annual_volatility,
    book_returns,
    buy_and_hold_returns,
    cumulative_return,
    daily_ic,
    hac_lags,
    ic_report,
    label_as_prediction,
    max_drawdown,
    performance,
    portfolio_report,
    portfolio_returns,
    sharpe_ratio,
    shuffled_prediction,
    summarize_ic,
)
from stock_assets.models.labels import labelled_universe

D1, D2, D3 = dt.date(2010, 1, 4), dt.date(2010, 1, 5), dt.date(2010, 1, 6)


@pytest.fixture(scope="module")
def universe_rows(adjusted, membership) -> pl.DataFrame:
    """Real bars of index members with their momentum (a past-only score) and membership."""
    return (
        adjusted.sort("instrument", "date")
        .with_columns(momentum=pl.col("adj_close").pct_change(5).over("instrument"))
        .select("instrument", "ticker", "date", "adj_close", "momentum")
        .join(membership, on=["date", "ticker"], how="left")
        .with_columns(pl.col("in_universe").fill_null(False))
    )


@pytest.fixture(scope="module")
def member_labels(universe_rows, labels) -> dict[int, pl.DataFrame]:
    """Members with a known h-session label, normalised per date (as training sees them); a
    light frame (no features), so these tests do not need the gold features."""
    return {h: labelled_universe(universe_rows, frame) for h, frame in labels.items()}


# -- IC -----------------------------------------------------------------------------------------
def test_daily_ic_and_rank_ic_on_a_hand_made_example():
    rows = {
        D1: ([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]),  # Pearson 0.4/sqrt(5*0.05) = 0.8, Spearman 0.8
        D2: ([4, 3, 2, 1], [0.1, 0.3, 0.2, 0.4]),  # both -0.8
        D3: ([1, 1, 2, 3], [1.0, 2.0, 3.0, 4.0]),  # average-tie ranks: 4.5 / sqrt(4.5 * 5)
    }
    frame = pl.DataFrame(
        [
            {"date": d, "instrument": f"I{i}", "prediction": float(p), "label": y}
            for d, (preds, labels) in rows.items()
            for i, (p, y) in enumerate(zip(preds, labels, strict=True))
        ]
        + [{"date": dt.date(2010, 1, 7), "instrument": "I0", "prediction": 1.0, "label": 2.0}]
    )
    daily = daily_ic(frame)
    assert daily["date"].to_list() == [D1, D2, D3, dt.date(2010, 1, 7)]
    np.testing.assert_allclose(daily["rank_ic"][:3], [0.8, -0.8, 3 / math.sqrt(10)], rtol=1e-12)
    pearson_d3 = np.corrcoef([1, 1, 2, 3], [1, 2, 3, 4])[0, 1]
    np.testing.assert_allclose(daily["ic"][:3], [0.8, -0.8, pearson_d3], rtol=1e-12)
    assert daily["ic"][3] is None and daily["rank_ic"][3] is None  # one row: undefined
    assert ic_report(frame)["rank_ic"].days == 3


def test_ic_summary_formulas():
    summary = summarize_ic([0.1, 0.2, 0.3, None, float("nan")])
    assert summary.days == 3
    assert summary.mean == pytest.approx(0.2, rel=1e-12)
    assert summary.std == pytest.approx(0.1, rel=1e-12)  # ddof 1
    assert summary.icir == pytest.approx(2.0, rel=1e-12)
    assert summary.t_stat == pytest.approx(2.0 * math.sqrt(3), rel=1e-12)
    assert summary.as_dict("rank_ic")["rank_ic_t_stat"] == summary.t_stat


def test_newey_west_t_equals_statsmodels_hac_and_shrinks_on_overlapping_labels():
    """Daily ICs of 5-day labels are a moving sum of shared shocks: the plain t overstates."""
    import statsmodels.api as sm

    shocks = np.random.default_rng(7).standard_normal(504)
    overlapping = 0.02 + np.convolve(shocks, np.ones(5) / 5, mode="valid") * 0.1
    summary = summarize_ic(overlapping, lags=4)
    hac = sm.OLS(overlapping, np.ones_like(overlapping)).fit(
        cov_type="HAC", cov_kwds={"maxlags": 4, "use_correction": False}
    )
    assert summary.nw_t_stat == pytest.approx(hac.tvalues[0], rel=1e-9)
    assert summary.nw_lags == 4
    assert abs(summary.nw_t_stat) < abs(summary.t_stat) / 1.5
    assert summarize_ic(overlapping).nw_t_stat == pytest.approx(summary.t_stat, rel=1e-2)


def test_the_label_as_prediction_gives_rank_ic_one_and_shuffled_labels_zero(member_labels):
    """On the real year's universe: the oracle is perfect, a shuffle per date carries nothing."""
    for frame in member_labels.values():
        assert frame["date"].n_unique() > 230
        oracle = ic_report(label_as_prediction(frame))["rank_ic"]
        assert oracle.mean == pytest.approx(1.0, abs=1e-12)
        noisy = ic_report(label_as_prediction(frame, noise=0.1, seed=1))["rank_ic"]
        assert 0.95 < noisy.mean < 1.0
        shuffled = ic_report(shuffled_prediction(frame, seed=2))["rank_ic"]
        assert abs(shuffled.mean) < 0.05 and abs(shuffled.t_stat) < 4
        assert shuffled.std > 0.02  # about 1/sqrt(450) per day, not degenerate


# -- portfolio accounting ------------------------------------------------------------------------
def tiny_market(predictions: dict, returns: dict) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"date": d, "instrument": name, "prediction": p, "forward_return": returns[d][i]}
            for d, preds in predictions.items()
            for i, (name, p) in enumerate(zip("ABCD", preds, strict=False))
        ]
    )


MARKET = tiny_market(
    {D1: [3.0, 2.0, 1.0], D2: [3.0, 1.0, 2.0], D3: [2.0, 1.0, 3.0]},
    {D1: [0.10, -0.10, 0.0], D2: [0.02, 0.50, -0.04], D3: [0.01, 0.0, 0.03]},
)
# the same market with a fourth name always ranked last and flat: 4 names give a long leg of 2
MARKET4 = tiny_market(
    {D1: [3.0, 2.0, 1.0, 0.0], D2: [3.0, 1.0, 2.0, 0.0], D3: [2.0, 1.0, 3.0, 0.0]},
    {D1: [0.10, -0.10, 0.0, 0.0], D2: [0.02, 0.50, -0.04, 0.0], D3: [0.01, 0.0, 0.03, 0.0]},
)


def test_the_long_leg_is_the_signals_long_leg_min_k_and_half_the_names():
    """3 names and k=2: the signals' rule holds min(2, 3 // 2) = 1 name long, not 2."""
    daily = portfolio_returns(MARKET, k=2).sort("date")
    np.testing.assert_allclose(daily["long_gross"], [0.10, 0.02, 0.03], atol=1e-15)


def test_top_k_costs_are_charged_on_the_drifted_weight_changes():
    daily = portfolio_returns(MARKET4, k=2).sort("date")
    # day 1: buy A and B at 1/2 each from cash: 1.0 bought at 5 bp; A +10%, B -10% -> gross 0
    # after day 1 the book drifts to A 0.55, B 0.45
    # day 2: target A 0.5, C 0.5: sell 0.05 A + 0.45 B (15 bp), buy 0.5 C (5 bp)
    #        gross 0.5 * 2% + 0.5 * -4% = -1%; the book drifts to A 0.51/0.99, C 0.48/0.99
    # day 3: target A 0.5, C 0.5 again: sell 0.015/0.99 of A, buy 0.015/0.99 of C
    expected_cost = [1.0 * 5e-4, 0.5 * 15e-4 + 0.5 * 5e-4, 0.015 / 0.99 * (15e-4 + 5e-4)]
    expected_gross = [0.0, -0.01, 0.5 * 0.01 + 0.5 * 0.03]
    np.testing.assert_allclose(daily["long_cost"], expected_cost, rtol=1e-12)
    np.testing.assert_allclose(daily["long_gross"], expected_gross, atol=1e-15)
    np.testing.assert_allclose(
        daily["long_net"], np.array(expected_gross) - expected_cost, atol=1e-15
    )
    np.testing.assert_allclose(daily["long_turnover"], [1.0, 1.0, 0.03 / 0.99], rtol=1e-12)


def test_long_short_costs_and_the_buy_and_hold_benchmark():
    daily = portfolio_returns(MARKET, k=1).sort("date")
    # day 1: long A, short C: buy 1 (5 bp), sell short 1 (15 bp); gross 10% - 0% = 10%
    # capital 1.1, A worth 1.1 -> weight 1; C owes 1.0 -> weight -1/1.1
    # day 2: long A, short B: A unchanged, short B 1 (15 bp), cover C 1/1.1 (5 bp)
    assert daily["long_short_cost"][0] == pytest.approx(5e-4 + 15e-4, rel=1e-12)
    assert daily["long_short_gross"][0] == pytest.approx(0.10, rel=1e-12)
    assert daily["long_short_cost"][1] == pytest.approx(15e-4 + 5e-4 / 1.1, rel=1e-12)
    assert daily["long_short_net"][1] == pytest.approx(0.02 - 0.50 - 15e-4 - 5e-4 / 1.1)
    # benchmark: 1/3 each on day 1, never rebalanced, no costs
    values = np.array([1.0, 1.0, 1.0])
    expected = []
    for day in (D1, D2, D3):
        realised = MARKET.filter(pl.col("date") == day)["forward_return"].to_numpy()
        expected.append(values @ realised / values.sum())
        values = values * (1 + realised)
    np.testing.assert_allclose(daily["benchmark"], expected, rtol=1e-12)
    assert expected[2] == pytest.approx((1.122 * 0.01 + 0.96 * 0.03) / 3.432, rel=1e-12)


def test_higher_costs_lower_the_net_return_by_exactly_the_extra_cost():
    cheap = portfolio_returns(MARKET4, k=2, costs=CostModel(0.0, 0.0))
    dear = portfolio_returns(MARKET4, k=2, costs=CostModel(1e-3, 2e-3))
    np.testing.assert_array_equal(cheap["long_gross"], dear["long_gross"])
    np.testing.assert_allclose(cheap["long_net"] - dear["long_net"], dear["long_cost"])
    assert (cheap["long_cost"] == 0).all()


# -- metrics --------------------------------------------------------------------------------------
def real_series(member_labels: dict[int, pl.DataFrame]) -> dict[str, np.ndarray]:
    """Daily return series of a real momentum portfolio on the real year."""
    frame = member_labels[1].with_columns(prediction=pl.col("momentum"))
    daily = portfolio_returns(frame, k=50)
    assert daily.height > 230
    return {name: daily[name].to_numpy() for name in ("long_net", "long_short_net", "benchmark")}


def test_each_metric_equals_empyricals_on_the_same_returns(member_labels):
    series = real_series(member_labels)
    series["losing"] = -np.abs(series["benchmark"])  # drawdown without recovery
    for name, returns in series.items():
        pairs = [
            (sharpe_ratio(returns), empyrical.sharpe_ratio(returns)),
            (max_drawdown(returns), empyrical.max_drawdown(returns)),
            (annual_return(returns), empyrical.annual_return(returns)),
            (annual_volatility(returns), empyrical.annual_volatility(returns)),
            (cumulative_return(returns), empyrical.cum_returns_final(returns)),
        ]
        for ours, theirs in pairs:
            assert ours == pytest.approx(float(theirs), rel=1e-12, abs=0), name
    summary = performance(series["long_net"])
    assert summary.sharpe == sharpe_ratio(series["long_net"]) and summary.days > 230
    assert max_drawdown([0.01, 0.02]) == 0.0
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)  # the start is a peak


def test_the_oracle_portfolio_beats_the_benchmark_and_pays_for_its_turnover(member_labels):
    """Knowing tomorrow's return (the label) must show up in the portfolio and its costs."""
    oracle = label_as_prediction(member_labels[1])
    daily = portfolio_returns(oracle, k=20)
    report = portfolio_report(daily)
    assert report["long"].annual_return > report["benchmark"].annual_return + 1.0
    assert report["long_short"].sharpe > 10
    assert report["long"].mean_turnover > 1.0  # a new top 20 almost every day
    assert (daily["long_net"] < daily["long_gross"]).all()


def test_shuffled_labels_get_an_independent_permutation_on_every_date():
    """Same-sized dates must not share one permutation (that made a fixed cross-section's
    shuffled rank IC -0.05 with t -18 instead of ~0)."""
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(300)]
    frame = pl.DataFrame(
        {
            "date": [d for d in days for _ in range(20)],
            "instrument": [f"I{i:02d}" for _ in days for i in range(20)],
            "label": [float(i) for _ in days for i in range(20)],
        }
    )
    shuffled = shuffled_prediction(frame)
    per_day = shuffled.group_by("date").agg(pl.col("prediction"))
    assert per_day["prediction"].list.sort().n_unique() == 1  # each date a permutation
    assert per_day["prediction"].n_unique() > 290  # and not the same one every date
    assert abs(ic_report(shuffled)["rank_ic"].t_stat) < 4  # a null, not a t of -18


# -- what users are shown: HAC t, books of stored positions, buy-and-hold across holes -------------
def test_the_newey_west_lags_are_at_least_the_horizon():
    for horizon in (1, 5, 20):
        for days in (10, 65, 250, 2500):
            assert hac_lags(horizon, days) >= horizon
    assert hac_lags(1, 65) == 3  # floor(4 * 0.65^(2/9)): a 1-session label still gets lags
    assert hac_lags(5, 65) == 5
    summary = summarize_ic(np.random.default_rng(0).standard_normal(65), horizon=5)
    assert summary.nw_lags == 5 and summary.t_label == "Newey-West t, 5 lags"


def test_h_lags_shrink_the_t_of_overlapping_labels_more_than_h_minus_one():
    """5-session labels: h-1 lags still overstate t; h lags come closer to the truth."""
    shocks = np.random.default_rng(11).standard_normal(5000)
    overlapping = 0.01 + np.convolve(shocks, np.ones(5) / 5, mode="valid") * 0.1
    fewer = summarize_ic(overlapping, lags=4).nw_t_stat
    shown = summarize_ic(overlapping, horizon=5)
    assert shown.nw_lags >= 5 and abs(shown.nw_t_stat) < abs(fewer)


def test_a_position_without_a_next_bar_earns_nothing_is_counted_and_sold_next_session():
    """B is held on D1 and has no bar on D2: it is valued at its last price (0 return), counted
    as a missing outcome, and its cash is sold out of at D2's rebalance like any position."""
    positions = pl.DataFrame(
        {
            "date": [D1, D1, D2, D2],
            "instrument": ["A", "B", "A", "C"],
            "weight": [0.5, 0.5, 0.5, 0.5],
            "next_return": [0.10, None, 0.02, 0.04],
        }
    )
    daily = book_returns(positions, costs=CostModel(0.0, 0.0)).sort("date")
    assert daily["long_gross"].to_list() == pytest.approx([0.05, 0.03])
    assert daily["missing_outcomes"].to_list() == [1, 0]
    # after D1: A 0.55/1.05, B (cash) 0.5/1.05; D2's target A 0.5, C 0.5 sells all of B
    held_b = 0.5 / 1.05
    held_a = 0.55 / 1.05
    assert daily["long_turnover"][1] == pytest.approx(held_b + (held_a - 0.5) + 0.5)


def test_buy_and_hold_across_a_hole_carries_the_move_to_the_next_known_close():
    """X has no bar on day 2 and trades again on day 3: day 2 earns it nothing and day 3 the
    whole move from day 1's close; Y stops after day 2 and sits in cash."""
    closes = np.array([[10.0, 20.0], [np.nan, 22.0], [12.0, np.nan], [13.0, np.nan]])
    returns = buy_and_hold_returns(closes)
    value = np.array([1.0, (1.0 + 1.1) / 2, (1.2 + 1.1) / 2, (1.3 + 1.1) / 2])
    np.testing.assert_allclose(returns, value[1:] / value[:-1] - 1, rtol=1e-12)
    assert np.prod(1 + returns) - 1 == pytest.approx((1.3 + 1.1) / 2 - 1, rel=1e-12)
