"""The ``stock-assets`` console script: replay, ingest, broker, audit and the local stack."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from stock_assets import config


def _kafka():
    from stock_assets.resources.kafka import KafkaResource

    bootstrap = config.kafka_bootstrap()
    if not bootstrap:
        sys.exit(
            "no Kafka broker: set STOCK_KAFKA_BOOTSTRAP, or start the local one with "
            "`stock-assets broker` (make run does this)"
        )
    return KafkaResource.resolved_from_env(bootstrap)


def cmd_replay(args: argparse.Namespace) -> int:
    from stock_assets.bronze.replay import replay, select_bars
    from stock_assets.resources.broker import ensure_topic

    kafka = _kafka()
    tickers = [t.strip().upper() for t in args.tickers.split(",")] if args.tickers else None
    bars = select_bars(args.dataset, args.start, args.end, tickers)
    partitions = config.market_bars_partitions()
    ensure_topic(kafka.bootstrap_servers, args.topic, partitions, security=kafka.security_kwargs())
    report = replay(kafka, args.topic, bars, args.dataset, days_per_second=args.days_per_second)
    print(report.summary())
    return 1 if report.failed else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from stock_assets.models.audit import prediction_chain
    from stock_assets.models.reproduce import reproduce
    from stock_assets.resources.lake import LakeResource
    from stock_assets.resources.mlflow import MlflowResource

    lake, registry = LakeResource.from_env(), MlflowResource.from_env()
    ticker = args.ticker.upper()
    try:
        if args.reproduce:  # exit status 1 when the recomputation differs
            reproduction = reproduce(lake, registry, ticker, args.date, args.role)
            print(reproduction.summary())
            return 0 if reproduction.identical else 1
        print(prediction_chain(lake, registry, ticker, args.date, args.role).summary())
    except LookupError as error:  # no such prediction, or a recorded version no longer readable
        print(f"audit: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from stock_assets.bronze.ingest import catch_up
    from stock_assets.bronze.market_bars import MARKET_BARS
    from stock_assets.resources.lake import LakeResource

    kafka, lake = _kafka(), LakeResource.from_env()
    reports = catch_up(
        kafka,
        lake,
        MARKET_BARS,
        args.topic,
        max_records_per_run=args.max_records,
        max_passes=None if args.until_caught_up else 1,
    )
    for report in reports:
        print(
            f"{report.topic}: stored {report.stored}, quarantined {report.quarantined}, "
            f"skipped {report.skipped_already_stored} already stored, "
            f"{report.stored_by_another_writer} stored first by a concurrent ingest, "
            f"last offsets {report.last_offsets}, {report.seconds:.1f}s"
        )
    if not reports:
        print(f"{args.topic}: bronze already holds every offset")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from stock_assets.local_stack import serve_broker_forever

    return serve_broker_forever(port=args.port)


def cmd_up(args: argparse.Namespace) -> int:
    from stock_assets.local_stack import run_local_stack

    datasets = args.datasets.split(",") if args.datasets else None
    return run_local_stack(datasets=datasets, ui_port=args.port)


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def build_parser() -> argparse.ArgumentParser:
    from stock_assets.bronze.datasets import DATASETS

    parser = argparse.ArgumentParser(prog="stock-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="publish packaged historical bars onto Kafka")
    replay.add_argument("--dataset", choices=sorted(DATASETS), default="sp500_2009")
    replay.add_argument("--start", type=_date, help="first bar date (YYYY-MM-DD)")
    replay.add_argument("--end", type=_date, help="last bar date (YYYY-MM-DD)")
    replay.add_argument("--tickers", help="comma-separated symbols (default: all)")
    replay.add_argument(
        "--days-per-second",
        type=float,
        help="pace like a live feed (N trading days per second); default: as fast as possible",
    )
    replay.add_argument("--topic", default=config.market_bars_topic())
    replay.set_defaults(func=cmd_replay)

    ingest = sub.add_parser("ingest", help="Kafka -> bronze Delta without the Dagster daemon")
    ingest.add_argument("--until-caught-up", action="store_true", help="loop until no lag")
    ingest.add_argument("--topic", default=config.market_bars_topic())
    ingest.add_argument("--max-records", type=int, default=500_000, help="per pass")
    ingest.set_defaults(func=cmd_ingest)

    broker = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (foreground)")
    broker.add_argument("--port", type=int, help="default: a free port")
    broker.set_defaults(func=cmd_broker)

    audit = sub.add_parser("audit", help="the chain behind a stored prediction, to Kafka offsets")
    audit.add_argument("ticker")
    audit.add_argument("date", type=_date)
    audit.add_argument("--role", choices=["champion", "challenger"], default="champion")
    audit.add_argument(
        "--reproduce",
        action="store_true",
        help="recompute the feature row from its recorded input versions, re-score it with the "
        "registered model version, and report bit equality or the first difference",
    )
    audit.set_defaults(func=cmd_audit)

    up = sub.add_parser("up", help="broker + replay + Dagster UI/daemon (what `make run` runs)")
    up.add_argument(
        "--datasets", default=None, help="comma-separated; default STOCK_REPLAY_DATASETS"
    )
    up.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        if not isinstance(exc, _operator_errors()):
            raise
        sys.exit(f"stock-assets {args.command}: {exc}")


def _operator_errors() -> tuple[type[Exception], ...]:
    """What an operator can cause (bad input, broker down, a lake busy with other writers): one
    clear line and a non-zero exit, no traceback. Imported late: the CLI starts without Dagster."""
    from deltalake.exceptions import CommitFailedError

    from stock_assets.resources.kafka import BrokerUnavailable

    return (ValueError, LookupError, TimeoutError, BrokerUnavailable, CommitFailedError)


if __name__ == "__main__":
    sys.exit(main())
