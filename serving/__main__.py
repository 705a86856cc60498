"""``python -m serving``: the API under uvicorn (uvloop, httptools), host and port from
``STOCK_API_HOST`` / ``STOCK_API_PORT`` (default 0.0.0.0:8000, as the container runs it)."""

from __future__ import annotations

import sys

import uvicorn

from serving.api import create_app
from serving.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    # The background poll (registry and Delta log reads, a snapshot rebuild) runs Python in a
    # worker thread; hand the GIL back to the event loop after 1 ms instead of 5 ms, so a poll
    # delays requests by at most that much at a time.
    sys.setswitchinterval(0.001)
    # one process: the app built from these settings (read once); several workers each build
    # their own from the environment (uvicorn imports the factory in each)
    app = create_app(settings) if settings.workers == 1 else "serving.api:create_app"
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=settings.log_level,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
