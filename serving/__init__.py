"""The prediction API (FastAPI): `serving.api.create_app`, run with ``python -m serving``.

Reads what the pipeline stored (gold tables, the MLflow registry, the Feast online store)
through `stock_assets.outputs`; never imports Dagster. docs/SERVING.md describes it.
"""

import os
import sys

# Feast's metrics module points PROMETHEUS_MULTIPROC_DIR at a temp dir when imported, and a
# child process inherits it: prometheus_client would then keep this process's metrics in mmap
# files. The API has its own in-process registry, so Feast's setting is dropped before
# prometheus_client picks its value class (at import, below); not after, when removing it
# would break the class already picked (a process that imported Feast first, e.g. a test).
if "prometheus_client.values" not in sys.modules:
    for _name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        if "feast_metrics_" in os.environ.get(_name, ""):
            del os.environ[_name]

import prometheus_client.values  # noqa: E402, F401
