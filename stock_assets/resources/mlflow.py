"""MLflow tracking and registry as a typed Dagster resource around ``MlflowClient``.

dagster-mlflow 0.29 is installed but not used for this: its resource is a legacy function
resource that drives MLflow's process-global "active run", and its ``end_mlflow_on_run_finished``
hook ends that run after whichever op it judges last (it ended runs after the first op in a
multi-op job). Here each training asset opens its own MLflow run through the client, tags it with
the Dagster run id, and ends it FINISHED or FAILED itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import Field

from stock_assets import config

CHAMPION, CHALLENGER = "champion", "challenger"


class MlflowResource(dg.ConfigurableResource):
    """SQLite store and local artifacts by default; a tracking server in production."""

    tracking_uri: str = Field(description="sqlite:///path.db locally, http(s)://server in prod")
    registry_uri: str = Field(default="", description="model registry; default: tracking_uri")
    artifact_location: str = Field(
        default="", description="where a new experiment stores artifacts (path or s3://...)"
    )
    experiment: str = "stock-predictions"
    model_name: str = Field(default="daily_returns_lightgbm", description="registered model")

    @classmethod
    def from_env(cls) -> MlflowResource:
        """``STOCK_MLFLOW_TRACKING_URI`` / ``STOCK_MLFLOW_ARTIFACTS``, else under the state dir."""
        local = config.state_dir() / "mlflow"
        return cls(
            tracking_uri=os.environ.get(
                "STOCK_MLFLOW_TRACKING_URI", f"sqlite:///{local / 'mlflow.db'}"
            ),
            artifact_location=os.environ.get(
                "STOCK_MLFLOW_ARTIFACTS", (local / "artifacts").as_uri()
            ),
        )

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

    def version_as_of(self, month: str, tag: str) -> ModelVersion | None:
        """The version whose ``tag`` (a YYYY-MM month) is the latest not after ``month``.

        ``refit_month`` finds the challenger trained for a month, ``champion_from`` the champion
        in force then: a past session is predicted by the model of its time, never a later one.
        """
        eligible = [v for v in self.versions() if v.tags.get(tag, "9999-99") <= month]
        if not eligible:
            return None
        return max(eligible, key=lambda v: (v.tags[tag], int(v.version)))

    def _ensure_local_dirs(self) -> None:
        for uri in (self.tracking_uri, self.registry):
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
