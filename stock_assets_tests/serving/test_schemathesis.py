"""Property-based requests generated from the API's own OpenAPI document (schemathesis), sent to
the live server: no request, valid or not, may get a 5xx, and every answer matches the document
(status code, content type, body schema).

Driven from Python (schemathesis' pytest plugin does not run on pytest 9): one test per
operation, a bounded number of valid and of invalid examples each, no shrinking. The admin
endpoints are fuzzed with an admin key (the share is put back to 0 afterwards)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.api import create_app
from serving.settings import Settings
from stock_assets_tests.serving.conftest import ADMIN, FUZZER

pytestmark = pytest.mark.timeout(900)
PATHS = create_app(Settings()).openapi()["paths"]
OPERATIONS = [
    pytest.param(mode, method.upper(), path, id=f"{mode.value}-{method.upper()}-{path}")
    for path, operations in PATHS.items()
    for method, spec in operations.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # an operation without parameters or body has no invalid request to generate
    if mode == GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_schema(api):
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json")


@pytest.mark.parametrize(("mode", "method", "path"), OPERATIONS)
def test_generated_requests_get_no_server_error_and_documented_answers(
    live_schema, api, mode, method, path
):
    operation = live_schema[path][method]
    admin = path.startswith("/v1/admin/")
    key = ADMIN if admin else FUZZER

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exchange(case):
        case.call_and_validate(headers={"X-API-Key": key}, checks=CHECKS, timeout=60)

    try:
        exchange()
    finally:
        if admin:
            with api.client(ADMIN) as client:
                client.put("/v1/admin/rollout", json={"challenger_share": 0})
