"""Model evaluation on real data: our walk-forward LightGBM, the best single factor, and Qlib.

    .venv/bin/python bench/model_evaluation.py [--sets sp500_2009,msft_1986] [--folds N]
        [--every K] [--sanity-folds 2] [--series-sanity-folds N] [--no-qlib] [--sample N]
        [--out results.json]

For each data set (real bars, split-adjusted by silver's `adjust_bars` with the reviewed corporate
actions), in one run:

1. features: `gold.assemble.assemble` with a real point-in-time Context (packaged macro series,
   earnings calendar, market news tone, and the universe: the packaged S&P 500 membership for
   the two S&P sets, every name for the few-name sets, see PLANS);
2. ours: `models.walk_forward` (expanding or rolling folds, gap = horizon on both sides of the
   validation slice), scored out of sample: IC and rank IC with ICIR and t-statistics (plain
   and Newey-West), a top-k and a long-short book with 5 bp buy / 15 bp sell costs against
   equal-weight buy-and-hold, split-conformal coverage (calibrated on each fold's validation
   slice, measured on its test slice), training and inference wall times;
3. sanity: the label as the prediction, the label as a feature (trained), labels shuffled
   (trained), the label shuffled as the prediction;
4. the best single Alpha158 factor, chosen with its sign on each fold's training rows only;
5. Qlib's own workflow on the same bars (pyqlib: binary provider written with
   `gold.qlib_binary`, the `Alpha158` handler, `LGBModel` with Qlib's benchmark parameters),
   same folds, predicting the same test slices, scored by the same code.

Few-name sets (msft_1986: one name; tsd_ohlcv: one to five) have no cross-section worth ranking:
they are trained on the raw forward return and scored per name over time (a time-series rank IC
per name and test slice, then mean and t over those blocks). `--every K` evaluates 1 in K
monthly folds (the newest kept), each exactly the shipped refit for its month: on the 28-33
year sets every fold is 330-390 trainings; every table header names K and the months covered.
Results go to stdout; `--out`
writes them as JSON too. docs/EVALUATION.md reports a run.

The code is split over bench/model_eval_*.py: `sets` (plans, bars, context, features, folds,
labels), `scoring` (IC figures, books), `baselines` (best factor, sanity runs), `qlib`,
`run` (one set end to end), `report` (printing), `clock`. This script puts bench/ on
``sys.path`` so they import each other by plain name.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # LightGBM's OpenMP threads sleep when idle

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_eval_clock import load_average  # noqa: E402
from model_eval_run import evaluate_set  # noqa: E402
from model_eval_sets import PLANS, VARIANTS, chosen_sets, context_of, load_sources  # noqa: E402

__all__ = ["PLANS", "context_of", "load_average", "load_sources"]  # bench/scaling.py uses these


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(PLANS), help="comma-separated data sets")
    parser.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    parser.add_argument(
        "--every", type=int, default=1, help="evaluate 1 in K monthly folds, the newest kept"
    )
    parser.add_argument(
        "--sanity-folds", type=int, default=2, help="trained sanity folds (cross-sections)"
    )
    parser.add_argument(
        "--series-sanity-folds", type=int, default=0,
        help="at most N trained sanity folds on the few-name sets (0: every evaluated fold)",
    )  # fmt: skip
    parser.add_argument("--no-qlib", action="store_true", help="skip Qlib's workflow")
    parser.add_argument("--sample", type=int, default=0, help="about N instruments (0: all)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--variant", default="shipped", choices=list(VARIANTS), help="training settings"
    )
    parser.add_argument(
        "--ablation", action="store_true", help="market-wide features ablation (cross-sections)"
    )
    args = parser.parse_args()
    names = chosen_sets(parser, args.sets)
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    training = VARIANTS[args.variant]
    print(f"load average at start: {load_average()}; polars threads {pl.thread_pool_size()}, "
          f"LightGBM threads {training.lightgbm().num_threads}")  # fmt: skip
    print(
        f"training settings ({args.variant}, models.challenger.TrainingConfig): "
        f"{training.split()}; {training.lightgbm()}; intervals {training.confidence_level:.0%}"
    )
    sources = load_sources()
    print(f"context sources (macro, earnings, membership, news tone) loaded in "
          f"{sources.seconds:.1f}s, outside both totals")  # fmt: skip
    results = [evaluate_set(name, args, sources) for name in names]
    end_load = load_average()
    print(f"\nload average at end: {end_load}; whole run {time.perf_counter() - started:.0f}s")
    if args.out:
        payload = {"sets": results, "load_average_end": end_load, "argv": sys.argv[1:]}
        args.out.write_text(json.dumps(payload, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
