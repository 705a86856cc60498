# Analyst app image: Streamlit (app/streamlit_app.py) on 0.0.0.0:8501.
# From the lock without the pipeline group: no Dagster, no Kafka.
#   docker build -f deployment/app.Dockerfile -t registry.example.com/stock-app:0.1.0 .
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
COPY .streamlit ./.streamlit
RUN uv sync --frozen --no-default-groups

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin stock
WORKDIR /opt/stock-assets
COPY --from=build /opt/stock-assets /opt/stock-assets
# Streamlit writes its config under $HOME (created above); no usage statistics leave the cluster
ENV PATH="/opt/stock-assets/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    STOCK_STATE_DIR=/tmp/stock-state \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
USER 10001
EXPOSE 8501
CMD ["streamlit", "run", "app/streamlit_app.py", "--server.port", "8501", "--server.address", "0.0.0.0"]
