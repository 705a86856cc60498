"""MLflow tracking and registry as a typed Dagster resource around ``MlflowClient``.

dagster-mlflow 0.29 is installed but not used for this: its resource is a legacy function
resource that drives MLflow's process-global "active run", and its ``end_mlflow_on_run_finished``
hook ends that run after whichever op it judges last (it ended runs after the first op in a
multi-op job). Here each training asset opens its own MLflow run through the client, tags it with
the Dagster run id, and ends it FINISHED or FAILED itself.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from stock_assets.models.registry import (
    CHALLENGER,
    CHAMPION,
    EXPERIMENT,
    MODEL_NAME,
    RegistryIO,
    settings_from_env,
)

__all__ = ["CHALLENGER", "CHAMPION", "MlflowResource"]


class MlflowResource(dg.ConfigurableResource, RegistryIO):
    """SQLite store and local artifacts by default; a tracking server in production."""

    tracking_uri: str = Field(description="sqlite:///path.db locally, http(s)://server in prod")
    registry_uri: str = Field(default="", description="model registry; default: tracking_uri")
    artifact_location: str = Field(
        default="", description="where a new experiment stores artifacts (path or s3://...)"
    )
    experiment: str = EXPERIMENT
    model_name: str = Field(default=MODEL_NAME, description="registered model")

    @classmethod
    def from_env(cls) -> MlflowResource:
        return cls(**settings_from_env())
