# One image for every service of docker-compose.yml: the Dagster webserver and daemon, the code
# server that runs the refresh, the workers and the ESI simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_STORAGE_DIR=/opt/dagster/storage \
    DAGSTER_COMPUTE_LOGS_DIR=/opt/dagster/storage/compute_logs

WORKDIR /opt/killreport
COPY setup.py pyproject.toml ./
COPY killreport_assets ./killreport_assets
# A regular (not editable) install: the pinned Dagster set, the `killreport` command, the migrations.
RUN pip install .

# The instance every Dagster process shares (PostgreSQL storage from DAGSTER_PG_*), the gRPC
# workspace of the webserver and daemon, and the storage folder a volume is mounted on.
RUN useradd --create-home --uid 10001 killreport \
    && mkdir -p "$DAGSTER_HOME" "$DAGSTER_COMPUTE_LOGS_DIR" \
    && chown -R killreport /opt/dagster
COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/

USER killreport
WORKDIR /opt/dagster/dagster_home
EXPOSE 3000 4000
CMD ["killreport", "--help"]
