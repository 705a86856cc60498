"""The alert tests' local HTTP receiver stands in for the webhook Alertmanager posts to."""

from stock_assets_tests.alerts.conftest import http_receiver  # noqa: F401 (a fixture)
