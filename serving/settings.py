"""The service's settings, read once from the environment (docs/SERVING.md lists every variable).

API keys are configured as SHA-256 digests of the secrets, never the secrets: a leaked config
file or environment dump does not let anyone call the API. Keys are random 32-byte tokens, so a
plain digest is enough (a slow password hash would cost more than the whole request).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DIGEST = re.compile(r"^[0-9a-f]{64}$")
KEY_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def digest(secret: str) -> str:
    """The stored form of an API key: hex SHA-256 of the secret as sent in ``X-API-Key``."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh API key secret (32 random bytes, URL-safe)."""
    return "sk_" + secrets.token_urlsafe(32)


def ab_bucket(key_id: str) -> int:
    """The key's fixed A/B bucket in 0..9999: the same key always lands on the same side."""
    return int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "big") % 10_000


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    digest: str  # hex SHA-256 of the secret
    rate_per_s: float
    burst: int
    admin: bool = False

    @property
    def bucket(self) -> int:
        return ab_bucket(self.key_id)


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    workers: int = 1
    keys: tuple[ApiKey, ...] = ()
    rate_per_s: float = 50.0  # default token-bucket refill per key
    burst: int = 100  # default bucket size per key
    cors_origins: tuple[str, ...] = ()
    poll_s: float = 5.0  # how often the registry and the tables are checked for changes
    challenger_share: float = 0.0  # percent of API keys whose on-demand calls the challenger serves
    rollout_file: Path | None = None  # JSON {"challenger_share": x}, re-read when it changes
    feature_max_age: dt.timedelta = dt.timedelta(days=5)  # older online rows are "stale"
    max_tickers: int = 100  # per request (latest and on-demand)
    max_body_bytes: int = 64 * 1024  # POST/PUT bodies; 100 tickers take ~1.5 KB
    access_log: bool = False
    anonymous_rate_per_s: float = 5.0  # requests without a valid key, per client address
    anonymous_burst: int = 10
    metrics_port: int | None = None  # /metrics on this port only (internal), not the API's
    hot_paths: bool = True  # latest and on-demand answered by serving.hot, not FastAPI's router
    log_level: str = "info"  # uvicorn's and the service's
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        rate = float(env.get("STOCK_API_RATE_LIMIT", cls.rate_per_s))
        burst = int(env.get("STOCK_API_RATE_BURST", max(1, int(rate * 2))))
        keys = parse_keys(env.get("STOCK_API_KEYS", ""), rate, burst, admin=False)
        keys += parse_keys(env.get("STOCK_API_ADMIN_KEYS", ""), rate, burst, admin=True)
        if env.get("STOCK_API_KEYS_FILE"):
            keys += load_keys_file(Path(env["STOCK_API_KEYS_FILE"]), rate, burst)
        _unique(keys)
        origins = tuple(o.strip() for o in env.get("STOCK_API_CORS_ORIGINS", "").split(",") if o)
        share = float(env.get("STOCK_API_CHALLENGER_SHARE", "0"))
        if not 0 <= share <= 100:
            raise ValueError(f"STOCK_API_CHALLENGER_SHARE={share}: a percentage, 0..100")
        rollout = env.get("STOCK_API_ROLLOUT_FILE")
        anonymous = float(env.get("STOCK_API_ANONYMOUS_RATE_LIMIT", cls.anonymous_rate_per_s))
        metrics_port = (
            int(env["STOCK_API_METRICS_PORT"]) if env.get("STOCK_API_METRICS_PORT") else None
        )
        workers = int(env.get("STOCK_API_WORKERS", cls.workers))
        if metrics_port and workers > 1:
            raise ValueError(
                "STOCK_API_METRICS_PORT needs STOCK_API_WORKERS=1 (one port per process)"
            )
        return cls(
            host=env.get("STOCK_API_HOST", cls.host),
            port=int(env.get("STOCK_API_PORT", cls.port)),
            workers=workers,
            keys=keys,
            rate_per_s=rate,
            burst=burst,
            cors_origins=origins,
            poll_s=float(env.get("STOCK_API_POLL_SECONDS", cls.poll_s)),
            challenger_share=share,
            rollout_file=Path(rollout) if rollout else None,
            feature_max_age=dt.timedelta(
                seconds=float(env.get("STOCK_API_FEATURE_MAX_AGE_SECONDS", 5 * 86400))
            ),
            max_tickers=int(env.get("STOCK_API_MAX_TICKERS", cls.max_tickers)),
            max_body_bytes=int(env.get("STOCK_API_MAX_BODY_BYTES", cls.max_body_bytes)),
            access_log=_flag(env.get("STOCK_API_ACCESS_LOG", "0")),
            anonymous_rate_per_s=anonymous,
            anonymous_burst=int(
                env.get("STOCK_API_ANONYMOUS_RATE_BURST", max(1, int(anonymous * 2)))
            ),
            metrics_port=metrics_port,
            hot_paths=_flag(env.get("STOCK_API_HOT_PATHS", "1")),
            log_level=env.get("STOCK_API_LOG_LEVEL", cls.log_level).lower(),
        )


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def parse_keys(text: str, rate: float, burst: int, admin: bool) -> tuple[ApiKey, ...]:
    """``id:sha256hex[:rate[:burst]]`` entries separated by commas or newlines."""
    keys = []
    for entry in re.split(r"[,\n]", text):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3, 4):
            raise ValueError(f"API key entry {parts[0]!r}: expected id:sha256[:rate[:burst]]")
        key_rate = float(parts[2]) if len(parts) > 2 else rate
        key_burst = int(parts[3]) if len(parts) > 3 else burst
        keys.append(_key(parts[0], parts[1], key_rate, key_burst, admin))
    return tuple(keys)


def load_keys_file(path: Path, rate: float, burst: int) -> tuple[ApiKey, ...]:
    """A JSON list of ``{"id", "sha256", "rate_per_s"?, "burst"?, "admin"?}`` objects."""
    entries = json.loads(path.read_text())
    return tuple(
        _key(
            e["id"],
            e["sha256"],
            float(e.get("rate_per_s", rate)),
            int(e.get("burst", burst)),
            bool(e.get("admin", False)),
        )
        for e in entries
    )


def _key(key_id: str, hexdigest: str, rate: float, burst: int, admin: bool) -> ApiKey:
    if not KEY_ID.match(key_id):
        raise ValueError(f"API key id {key_id!r}: letters, digits and _.@- only")
    if not DIGEST.match(hexdigest.lower()):
        raise ValueError(f"API key {key_id!r}: the digest must be 64 hex characters (SHA-256)")
    if rate <= 0 or burst < 1:
        raise ValueError(f"API key {key_id!r}: rate must be > 0 and burst >= 1")
    return ApiKey(key_id, hexdigest.lower(), rate, burst, admin)


def _unique(keys: tuple[ApiKey, ...]) -> None:
    for attribute in ("key_id", "digest"):
        values = [getattr(k, attribute) for k in keys]
        if len(values) != len(set(values)):
            raise ValueError(f"API keys: duplicate {attribute}")
