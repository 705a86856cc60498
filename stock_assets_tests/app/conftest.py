"""The app reads the `delivered` state; tests start it with that state's environment."""

from __future__ import annotations

import pytest

DAGSTER_UI = "http://dagster.example:3000"


@pytest.fixture
def app_env(delivered, monkeypatch) -> dict[str, str]:
    """The environment of an app process reading the delivered state (set in this process)."""
    env = {**delivered.env, "STOCK_DAGSTER_UI_URL": DAGSTER_UI}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
