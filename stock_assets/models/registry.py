"""The MLflow tracking store and model registry, without Dagster (the API and app use it too).

``RegistryIO`` holds the behaviour; ``ModelRegistry`` is the plain settings object and the
Dagster resource (``stock_assets.resources.mlflow``) is the typed one, as with the lake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from stock_assets import config

CHAMPION, CHALLENGER = "champion", "challenger"
EXPERIMENT = "stock-predictions"
MODEL_NAME = "daily_returns_lightgbm"


def settings_from_env() -> dict[str, str]:
    """``STOCK_MLFLOW_TRACKING_URI`` / ``STOCK_MLFLOW_ARTIFACTS``, else under the state dir."""
    local = config.state_dir() / "mlflow"
    return {
        "tracking_uri": os.environ.get(
            "STOCK_MLFLOW_TRACKING_URI", f"sqlite:///{local / 'mlflow.db'}"
        ),
        "artifact_location": os.environ.get(
            "STOCK_MLFLOW_ARTIFACTS", (local / "artifacts").as_uri()
        ),
    }


class RegistryIO:
    """Subclasses provide tracking_uri, registry_uri, artifact_location, experiment, model_name."""

    tracking_uri: str
    registry_uri: str
    artifact_location: str
    experiment: str
    model_name: str

    @property
    def registry(self) -> str:
        return self.registry_uri or self.tracking_uri

    def client(self) -> MlflowClient:
        self._ensure_local_dirs()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry)

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(
                self.experiment, artifact_location=self.artifact_location or None
            )
        except MlflowException:  # a concurrent creator won
            return client.get_experiment_by_name(self.experiment).experiment_id

    @contextlib.contextmanager
    def run(self, run_name: str, tags: dict[str, str]) -> Iterator[Run]:
        """An MLflow run, active for ``mlflow.<flavor>.log_model``; FAILED if the body raises."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry)
        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run

    def version_for(self, alias: str) -> str | None:
        """The registered version an alias points at, resolved once (None when unset)."""
        try:
            return str(self.client().get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None

    def model_uri(self, version: str) -> str:
        return f"models:/{self.model_name}/{version}"

    def load_booster(self, version: str):
        """The LightGBM booster of a registered version."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry)
        return mlflow.lightgbm.load_model(self.model_uri(version))

    def set_alias(self, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, version)

    def versions(self) -> list[ModelVersion]:
        """Every registered version of the model (empty before the first registration)."""
        try:
            return list(self.client().search_model_versions(f"name = '{self.model_name}'"))
        except MlflowException:
            return []

    def version_as_of(self, day: dt.date | str, tag: str) -> ModelVersion | None:
        """The version whose ``tag`` (`serves_from` or `champion_from`) is the latest not after
        ``day`` (a date, or a 'YYYY-MM' month meaning its first session): a past session is
        predicted by the model of its time, never by one decided after it."""
        return in_force(self.versions(), day, tag)

    def versions_tagged(self, **tags: str) -> list[ModelVersion]:
        """Registered versions carrying every ``tags`` value, oldest first."""
        found = [v for v in self.versions() if all(v.tags.get(k) == t for k, t in tags.items())]
        return sorted(found, key=lambda v: int(v.version))

    def data_cut(self, version: ModelVersion) -> dt.date:
        """The last session whose row a version learnt from or was gated on: its ``data_cut``
        tag, or, for versions from before the gate slice existed, its validation end."""
        if "data_cut" in version.tags:
            return dt.date.fromisoformat(version.tags["data_cut"])
        params = self.client().get_run(version.run_id).data.params
        return dt.date.fromisoformat(params["validation_end"])

    def _ensure_local_dirs(self) -> None:
        for uri in (self.tracking_uri, self.registry):
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


SERVES_FROM, CHAMPION_FROM = "serves_from", "champion_from"


def tag_date(value: str) -> dt.date:
    """A start tag as a date: 'YYYY-MM-DD', or a month 'YYYY-MM' (older versions), which means
    its first session; no session of a month falls before its first day, so the 1st stands in."""
    return dt.date.fromisoformat(value if len(value) > 7 else f"{value}-01")


def starts(version: ModelVersion, tag: str) -> dt.date | None:
    """When ``version`` begins to serve in a role: ``serves_from`` (every registered version,
    scored in shadow; older versions only have ``refit_month``) or ``champion_from``."""
    value = version.tags.get(tag)
    if value is None and tag == SERVES_FROM:
        value = version.tags.get("refit_month")
    return tag_date(value) if value else None


def in_force(versions: list[ModelVersion], day: dt.date | str, tag: str) -> ModelVersion | None:
    """Of ``versions``, the one with the latest ``tag`` start on or before ``day`` (the newest
    version breaks ties); one registry listing serves a whole range of sessions this way."""
    day = tag_date(day) if isinstance(day, str) else day
    dated = [(start, int(v.version), v) for v in versions if (start := starts(v, tag))]
    eligible = [item for item in dated if item[0] <= day]
    return max(eligible, key=lambda item: item[:2])[2] if eligible else None


@dataclass
class ModelRegistry(RegistryIO):
    tracking_uri: str
    registry_uri: str = ""
    artifact_location: str = ""
    experiment: str = EXPERIMENT
    model_name: str = MODEL_NAME

    @classmethod
    def from_env(cls) -> ModelRegistry:
        return cls(**settings_from_env())
