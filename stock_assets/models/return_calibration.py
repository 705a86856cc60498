"""The return-interval calibration a monthly refit stores on its registered version.

The refit's gate slice (rows neither fitted nor early-stopped on) is where labels exist and the
model is out of sample, so the expected-return mapping and its conformal intervals
(`return_intervals`) are calibrated there, with the shipped scale. Stored in the version's
MLflow run: ``return_intervals/calibration_rows.parquet`` (instrument, date, label_known_on,
score, volatility, forward_return: the rows gold/predictions starts its daily recalibration
from) and ``return_intervals/calibration.json`` (the gate calibration's a, b, quantiles, scale
parameters and date range, also the version tag ``return_calibration``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl

from stock_assets.models import return_intervals as ri
from stock_assets.models.registry import RegistryIO

ARTIFACT_DIR = "return_intervals"
ROWS_FILE = "calibration_rows.parquet"
TAG = "return_calibration"
CALIBRATION_ROW_COLUMNS = [*ri.CALIBRATION_COLUMNS, "forward_return"]


def gate_rows(scored_gate: pl.DataFrame, bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """The gate slice's calibration rows: its scores (``prediction``), realised h-session
    returns and the trailing volatility from ``bars`` (adjusted bars before the month)."""
    volatility = ri.trailing_volatility(bars, horizon)
    return (
        scored_gate.rename({"prediction": "score"})
        .join(volatility, on=["instrument", "date"], how="left")
        .select(CALIBRATION_ROW_COLUMNS)
        .sort("date", "instrument")
    )


def record(
    registry: RegistryIO,
    run_id: str,
    version: str,
    scored_gate: pl.DataFrame,
    bars: pl.DataFrame,
    horizon: int,
) -> dict:
    """Calibrate on the gate slice, log rows and summary to ``run_id``, tag ``version``;
    returns the summary (with the scheme that ships)."""
    rows = gate_rows(scored_gate, bars, horizon)
    try:
        calibrated = ri.calibrate(rows, horizon, scale=ri.SHIPPED_SCALE).summary()
    except ri.TooFewCalibrationRows as error:  # one or a few names: stored, never calibrated
        calibrated = {"refused": str(error), "calibration_rows": rows.height}
    summary = {
        **calibrated,
        "recalibration": ri.SHIPPED_MODE,
        "calibration_sessions": ri.CALIBRATION_SESSIONS,
    }
    client = registry.client()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        rows.write_parquet(path / ROWS_FILE)
        (path / "calibration.json").write_text(json.dumps(summary, indent=2))
        client.log_artifacts(run_id, folder, ARTIFACT_DIR)
    client.set_model_version_tag(registry.model_name, version, TAG, json.dumps(summary))
    return summary


def metadata(summary: dict) -> dict:
    """Dagster metadata of the gate calibration, units named."""
    if "refused" in summary:
        return {
            "return_calibration": f"none: {summary['refused']}; expected returns stay null "
            f"while a {summary['calibration_sessions']}-session calibration is this small"
        }
    return {
        "return_mapping": f"expected_return = sigma * ({summary['a']:.4f} + "
        f"{summary['b']:.4f} * score) (fractions over h sessions)",
        "return_quantiles (per unit of scale)": summary["quantiles"],
        "return_scale": f"{summary['scale']}: exp({summary['scale_c']:.3f}) * "
        f"sigma^{summary['scale_d']:.3f}",
        "return_calibration_dates": f"{summary['calibration_start']}..{summary['calibration_end']}",
        "return_labels_known_until": summary["labels_known_until"],
        "return_recalibration": f"{summary['recalibration']}, latest "
        f"{summary['calibration_sessions']} sessions of known labels",
    }


def load_rows(registry: RegistryIO, run_id: str) -> pl.DataFrame | None:
    """The gate calibration rows a version's run stored (None for versions logged before)."""
    client = registry.client()
    names = {a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)}
    if f"{ARTIFACT_DIR}/{ROWS_FILE}" not in names:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{ROWS_FILE}", folder)
        return pl.read_parquet(local)
