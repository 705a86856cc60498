"""Explanations over HTTP: a stored prediction's contributions add up to its stored score with
the version that made it, on-demand answers carry them when asked, errors are fixed messages."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from serving import schemas
from stock_assets import tables
from stock_assets.models.walk_forward import feature_matrix

pytestmark = pytest.mark.timeout(900)  # the first test may wait for the delivered state
FLOAT_PRECISION = 1e-12
JUNE_DAY = dt.date(2010, 6, 15)


def own_contributions(delivered, ticker: str, day: dt.date, role: str = "champion"):
    """The stored prediction, and LightGBM's contributions computed here from the lake."""
    stored = delivered.lake.read_dates(tables.GOLD_PREDICTIONS, day, day).filter(
        pl.col("ticker") == ticker, pl.col("role") == role
    )
    prediction = stored.row(0, named=True)
    features = delivered.lake.read_dates(
        tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"]
    ).filter(pl.col("instrument") == prediction["instrument"])
    booster = delivered.registry.load_booster(prediction["model_version"])
    matrix = feature_matrix(features, booster.feature_name())
    contrib = booster.predict(
        matrix, num_iteration=booster.best_iteration or None, pred_contrib=True
    )[0]
    return prediction, dict(zip(booster.feature_name(), contrib[:-1], strict=True)), contrib[-1]


@pytest.mark.parametrize(("day", "role"), [(JUNE_DAY, "champion"), (None, "challenger")])
def test_a_stored_prediction_is_explained_by_the_version_that_made_it(api, delivered, day, role):
    with api.client() as client:
        params = {"role": role, "top": 7} | ({"date": day.isoformat()} if day else {})
        answer = client.get("/v1/predictions/AAPL/explanation", params=params)
    assert answer.status_code == 200, answer.text
    body = schemas.Explanation.model_validate(answer.json())
    newest = delivered.lake.read(tables.GOLD_PREDICTIONS)["date"].max()
    assert body.date == (day or newest) and body.role == role
    prediction, contrib, bias = own_contributions(delivered, "AAPL", body.date, role)
    assert body.model.version == prediction["model_version"]
    assert body.prediction == prediction["prediction"]
    assert body.feature_table_version == prediction["feature_table_version"]
    assert abs(body.bias + sum(c.contribution for c in body.top) + body.rest - body.prediction) <= (
        FLOAT_PRECISION
    )
    assert body.bias == pytest.approx(bias, abs=FLOAT_PRECISION)
    largest = sorted(contrib, key=lambda f: (-abs(contrib[f]), f))[:7]
    assert [c.feature for c in body.top] == largest
    for item in body.top:
        assert item.contribution == pytest.approx(contrib[item.feature], abs=FLOAT_PRECISION)
    assert body.session.thin is False


def test_on_demand_answers_include_explanations_when_asked(api):
    tickers = ["AAPL", "ADI"]
    with api.client() as client:
        plain = client.post("/v1/predictions/on-demand", json={"tickers": tickers})
        asked = {"tickers": tickers, "explain": True, "top": 4}
        cached = client.post("/v1/predictions/on-demand", json=asked)
        cold = client.post("/v1/predictions/on-demand", json=asked | {"source": "feast"})
    assert plain.status_code == cached.status_code == cold.status_code == 200, cold.text
    assert all(i.get("explanation") is None for i in plain.json()["items"])
    for answer in (cached, cold):
        body = schemas.OnDemandResponse.model_validate(answer.json())
        for item in body.items:
            why = item.explanation
            assert why is not None and len(why.top) == 4
            added = why.bias + sum(c.contribution for c in why.top) + why.rest
            assert abs(added - item.prediction) <= 1e-9
            assert abs(why.raw_score - item.prediction) <= 1e-9
    pairs = zip(cached.json()["items"], cold.json()["items"], strict=True)
    for warm, fresh in pairs:  # both paths explain the same online row alike
        assert np.isclose(warm["explanation"]["bias"], fresh["explanation"]["bias"])
        assert warm["explanation"]["top"] == fresh["explanation"]["top"]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/predictions/NOPE/explanation", {}, 404, "unknown_ticker"),
        ("/v1/predictions/AAPL/explanation", {"date": "2010-06-13"}, 404, "not_found"),
        ("/v1/predictions/AAPL/explanation", {"date": "2010-02-30"}, 422, "validation_error"),
        ("/v1/predictions/AAPL/explanation", {"top": 0}, 422, "validation_error"),
        ("/v1/predictions/AAPL/explanation", {"role": "x"}, 422, "validation_error"),
    ],
)
def test_explanation_errors_are_fixed_messages(api, path, params, status, code):
    with api.client() as client:
        answer = client.get(path, params=params)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code
    assert "Traceback" not in body["message"] and "sqlite" not in body["message"]
    if status == 404 and "date" in params:  # a Sunday: nothing stored, said plainly
        assert body["message"] == "no champion prediction stored for AAPL on 2010-06-13"
