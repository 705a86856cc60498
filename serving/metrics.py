"""The service's Prometheus metrics, in a registry of its own, and the internal metrics port.

No label carries who called: a per-key label would list every customer's key id to whoever
reads /metrics; refusals are counted by kind of client (``key`` or ``anonymous``) instead.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "stock_api_requests", "HTTP requests by route template and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "stock_api_request_duration_seconds", "Time in the service per request, by route",
            ["route"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.model_requests = Counter(
            "stock_api_model_requests",
            "Requests answered with a model's predictions: kind stored (gold/predictions) or "
            "on_demand (Feast online features scored now), by role and registered version",
            ["kind", "role", "version"], registry=r,
        )  # fmt: skip
        self.realised_rank_ic = Gauge(
            "stock_api_model_realised_rank_ic",
            "Mean daily rank IC of each role and version's stored predictions (index members) "
            "against the realised forward return, over sessions whose outcome is known",
            ["role", "version"], registry=r,
        )  # fmt: skip
        self.realised_days = Gauge(
            "stock_api_model_realised_days", "Sessions behind stock_api_model_realised_rank_ic",
            ["role", "version"], registry=r,
        )  # fmt: skip
        self.alias_version = Gauge(
            "stock_api_model_alias_version", "Registered version each alias resolved to",
            ["role"], registry=r,
        )  # fmt: skip
        self.table_version = Gauge(
            "stock_api_table_version", "Delta version of each table the snapshot reads",
            ["table"], registry=r,
        )  # fmt: skip
        self.data_date = Gauge(
            "stock_api_data_date_seconds", "Newest predicted session (epoch seconds)", registry=r
        )
        self.loads = Counter(
            "stock_api_snapshot_loads", "Snapshot polls by result (swapped, unchanged, error)",
            ["result"], registry=r,
        )  # fmt: skip
        self.challenger_share = Gauge(
            "stock_api_challenger_share_percent", "Share of API keys routed to the challenger",
            registry=r,
        )  # fmt: skip
        self.online_rows = Gauge(
            "stock_api_online_cache_rows", "Online feature rows cached for on-demand predictions",
            registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "stock_api_rejected", "Requests refused before routing, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "stock_api_rate_limited",
            "Requests answered 429: client key (a valid API key's bucket) or anonymous "
            "(missing or unknown key, limited per client address)",
            ["client"], registry=r,
        )  # fmt: skip
        self._children: dict = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def model_request(self, kind: str, role: str, version: str) -> None:
        child = self._children.get((kind, role, version))
        if child is None:
            child = self._children[(kind, role, version)] = self.model_requests.labels(
                kind, role, version
            )
        child.inc()


def serve_metrics(registry: CollectorRegistry, host: str, port: int):
    """/metrics on its own port (prometheus_client's server, in a thread), for deployments that
    keep metrics off the public port; returns the server, to shut down with the app."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
