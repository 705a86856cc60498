# Prediction API image: FastAPI (package serving/), started as `python -m serving` on 0.0.0.0:8000.
#   docker build -f deployment/api.Dockerfile -t registry.example.com/stock-api:0.1.0 .
# From the same lock as the code location, without the pipeline group: no Dagster, no Kafka.
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_PROJECT_ENVIRONMENT=/opt/stock-assets/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /opt/stock-assets
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-install-project
COPY stock_assets ./stock_assets
COPY serving ./serving
COPY app ./app
RUN uv sync --frozen --no-default-groups

# The API loads the champion LightGBM booster: libgomp1 is its OpenMP runtime.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin stock
WORKDIR /opt/stock-assets
COPY --from=build /opt/stock-assets /opt/stock-assets
ENV PATH="/opt/stock-assets/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    STOCK_STATE_DIR=/tmp/stock-state
USER 10001
EXPOSE 8000
CMD ["python", "-m", "serving"]
