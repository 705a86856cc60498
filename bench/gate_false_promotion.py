"""How often the promotion rule promotes a challenger that is no better than the champion.

Under no true difference, the daily rank-IC difference of two models is noise whose neighbours
share h-1 sessions of returns. This script simulates that null (`gate.false_promotion_rate`:
sums of h consecutive shocks, optionally persistent or fat-tailed) and applies the rule the
challenger's gate and the shadow verdict use (`gate.promotes`: paired Newey-West t >= the
threshold over at least the minimum of shared days). The first row is the shipped setting.

    .venv/bin/python bench/gate_false_promotion.py [--trials 20000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stock_assets.models import gate  # noqa: E402
from stock_assets.models.training import SHIPPED_SPLIT  # noqa: E402

SCENARIOS = [  # (label, horizon, shared days, AR(1) persistence, Student-t tail df)
    ("shipped: h=1, 20 gate days", SHIPPED_SPLIT.horizon, SHIPPED_SPLIT.gate_sessions, 0.0, None),
    ("h=1, 20 days, persistent noise (AR 0.2)", 1, 20, 0.2, None),
    ("h=1, 20 days, fat tails (t, 3 df)", 1, 20, 0.0, 3.0),
    ("h=1, 60 days", 1, 60, 0.0, None),
    ("h=5, 20 days", 5, 20, 0.0, None),
    ("h=5, 60 days", 5, 60, 0.0, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    args = parser.parse_args()
    print(f"rule: paired Newey-West t >= {gate.MIN_T} over >= {gate.MIN_DAYS} shared days")
    print(f"{'scenario':<44} {'lags':>4} {'false promotions':>17}")
    for label, horizon, days, persistence, tails in SCENARIOS:
        rate = gate.false_promotion_rate(
            days, horizon, persistence=persistence, tail_df=tails, trials=args.trials
        )
        print(f"{label:<44} {gate.paired_lags(horizon):>4} {rate:>16.1%}")


if __name__ == "__main__":
    main()
