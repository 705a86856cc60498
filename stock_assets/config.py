"""Settings read from the environment, with defaults that keep a local run inside the repo.

Everything a local run writes (Delta lake, Dagster home, broker data) lives under one ignored
folder, ``STOCK_STATE_DIR`` (default ``<repo>/.state``), so ``rm -rf .state`` is a full reset.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

MARKET_BARS_TOPIC_DEFAULT = "market.bars.daily"


def state_dir() -> Path:
    return Path(os.environ.get("STOCK_STATE_DIR", REPO_ROOT / ".state")).resolve()


def lake_root() -> str:
    """Root of the Delta lake: a local path or any deltalake URI (s3://, az://, gs://)."""
    return os.environ.get("STOCK_LAKE_ROOT", str(state_dir() / "lake"))


def feast_repo_dir() -> Path:
    """The Feast repo: feature_store.yaml, the file registry, the SQLite online store."""
    return Path(os.environ.get("STOCK_FEAST_REPO", state_dir() / "feast")).resolve()


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", state_dir() / "dagster_home")).resolve()


def market_bars_topic() -> str:
    return os.environ.get("STOCK_MARKET_TOPIC", MARKET_BARS_TOPIC_DEFAULT)


def market_bars_partitions() -> int:
    return int(os.environ.get("STOCK_MARKET_TOPIC_PARTITIONS", "6"))


REPLAY_DATASETS_DEFAULT = "sp500_2009"  # one price source per ticker, a full last session


def replay_datasets(names: str | None = None) -> list[str]:
    """Data sets ``make run`` replays: ``names`` (comma-separated) if given, else
    ``STOCK_REPLAY_DATASETS``, else the default two. An unknown name is a one-line ValueError."""
    from stock_assets.bronze.datasets import DATASETS

    if names is None:
        names = os.environ.get("STOCK_REPLAY_DATASETS", "").strip() or REPLAY_DATASETS_DEFAULT
        origin = f"STOCK_REPLAY_DATASETS={names!r}"
    else:
        origin = f"data sets {names!r}"
    chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in chosen if n not in DATASETS]
    if unknown or not chosen:
        problem = f"unknown data set {', '.join(unknown)}" if unknown else "no data set named"
        raise ValueError(f"{origin}: {problem}; choose from {', '.join(sorted(DATASETS))}")
    return chosen


def replay_until() -> dt.date | None:
    """``STOCK_REPLAY_UNTIL``: the last session ``make run`` replays (unset: every session), so
    later ones can be published as a live feed; a malformed date is a one-line ValueError."""
    raw = os.environ.get("STOCK_REPLAY_UNTIL", "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"STOCK_REPLAY_UNTIL={raw!r}: give a date as YYYY-MM-DD") from None


def broker_info_file() -> Path:
    """Where a running embedded broker advertises its address for other local processes."""
    return state_dir() / "broker" / "broker.json"


@dataclass(frozen=True)
class LocalBroker:
    bootstrap: str
    pid: int


def running_local_broker() -> LocalBroker | None:
    """The embedded broker started by ``stock-assets services``, if it is still alive."""
    path = broker_info_file()
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(info["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return LocalBroker(bootstrap=info["bootstrap"], pid=info["pid"])


def kafka_bootstrap() -> str | None:
    """``STOCK_KAFKA_BOOTSTRAP`` if set (an external cluster), else the local embedded broker."""
    explicit = os.environ.get("STOCK_KAFKA_BOOTSTRAP")
    if explicit:
        return explicit
    local = running_local_broker()
    return local.bootstrap if local else None


NEWS_TOPIC_DEFAULT = "news.articles"


def news_topic() -> str:
    """Kafka topic carrying news articles (the ``news.articles`` contract)."""
    return os.environ.get("STOCK_NEWS_TOPIC", NEWS_TOPIC_DEFAULT)
