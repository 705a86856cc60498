"""``python -m serving``: the API under uvicorn (uvloop, httptools), host and port from
``STOCK_API_HOST`` / ``STOCK_API_PORT`` (default 0.0.0.0:8000, as the container runs it)."""

from __future__ import annotations

import os

import uvicorn

from serving.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        "serving.api:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=os.environ.get("STOCK_API_LOG_LEVEL", "info"),
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
