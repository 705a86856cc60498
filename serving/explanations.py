"""Explanations served by the API: a stored prediction's, or an on-demand item's.

A stored prediction is explained from the feature row it was scored on (read at the
``feature_table_version`` it recorded) with the booster of the version that made it, so the
contributions and the bias add up to the stored score. Boosters of versions no alias points at
any more are loaded from the registry on first use and kept (a few, by version).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict

from serving.contract import ApiError
from stock_assets.models.explain import explain

log = logging.getLogger("serving")
KEPT_BOOSTERS = 4  # older versions kept beside the snapshot's champion and challenger


class Boosters:
    """Boosters by registered version: the snapshot's loaded models first, then a small cache."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, snapshot, version: str):
        for model in snapshot.models.values():
            if model is not None and model.card.version == version:
                return model.booster
        with self._lock:
            if version in self._kept:
                self._kept.move_to_end(version)
                return self._kept[version]
        booster = snapshot.outputs.registry.load_booster(version)  # outside the lock: seconds
        with self._lock:
            self._kept[version] = booster
            while len(self._kept) > KEPT_BOOSTERS:
                self._kept.popitem(last=False)
        return booster


def stored_explanation(
    snapshot, boosters: Boosters, ticker: str, day: dt.date | None, role: str, top: int
) -> dict:
    """The explanation of ``ticker``'s stored ``role`` prediction for ``day`` (default: its
    latest); 404 with a fixed message when nothing is stored."""
    outputs = snapshot.outputs
    if day is None:
        history = outputs.prediction_history(ticker, end=snapshot.data_date, role=role)
        if history.is_empty():
            raise ApiError(404, "not_found", f"no {role} prediction stored for {ticker}")
        day = history["date"].max()
    prediction = outputs.stored_prediction(ticker, day, role)
    if prediction is None:
        raise ApiError(404, "not_found", f"no {role} prediction stored for {ticker} on {day}")
    features = outputs.prediction_features(prediction)
    if features.is_empty():  # the recorded feature version no longer holds the row (vacuumed)
        raise ApiError(404, "not_found", f"the features of {ticker} on {day} are not available")
    try:
        booster = boosters.get(snapshot, prediction["model_version"])
    except Exception:  # registry errors quote the store URI: log them, answer a fixed message
        log.exception("loading model version %s failed", prediction["model_version"])
        version = prediction["model_version"]
        message = f"model version {version} could not be loaded"
        raise ApiError(503, "model_unavailable", message) from None
    [why] = explain(booster, features, top)
    status = outputs.session_status(day)
    return {
        "ticker": ticker,
        "date": day,
        "role": role,
        "model": {
            "role": role,
            "name": prediction["model_name"],
            "version": prediction["model_version"],
        },  # fmt: skip
        "prediction": prediction["prediction"],
        "feature_table_version": prediction["feature_table_version"],
        "session": status,
        **why.as_dict(),
    }
