# syntax=docker/dockerfile:1
# The auditseal image: one image, every command (`docker run IMAGE seal ...`). See docs/DEPLOY.md,
# "Container image". Build from the repository root: docker build -t auditseal .
#
# Stage 1 builds wheels of auditseal and of every dependency (compilers stay in this stage);
# stage 2 installs them into a slim Python with no build tools, no pip cache and no secrets.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A dependency without a wheel for this platform is compiled here, never in the runtime image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the package is built from (.dockerignore keeps out state, keys and venvs).
COPY pyproject.toml README.md ./
COPY verifier/ verifier/
COPY store/ store/
COPY sealer/ sealer/
COPY anchor/ anchor/
COPY ingest/ ingest/
COPY readapi/ readapi/
COPY monitor/ monitor/
COPY dashboard/ dashboard/
COPY cli/ cli/
COPY infra/ infra/
COPY transport/ transport/
# The pipeline (Kafka, aiohttp, Prometheus, OCSF) and PostgreSQL extras; the hsm extra needs
# the host's PKCS#11 module and is left to images built for it.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[pipeline,postgres]"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="auditseal" \
      org.opencontainers.image.description="Tamper-evident audit trail: Kafka events sealed into RFC 9162 Merkle logs, anchored on Ethereum" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid, so that secret files and volumes on the host can be owned by it (chown 10001).
ARG AUDITSEAL_UID=10001
RUN groupadd --system --gid "${AUDITSEAL_UID}" auditseal \
    && useradd --system --uid "${AUDITSEAL_UID}" --gid auditseal --no-create-home \
       --home-dir /var/lib/auditseal --shell /usr/sbin/nologin auditseal \
    && install -d -o auditseal -g auditseal -m 0700 /var/lib/auditseal
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "auditseal[pipeline,postgres]"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUDITSEAL_STORE=/var/lib/auditseal/store.db
# The store, the sealer's and the monitor's state, the deployment record: one volume.
# Keys, passphrases and tokens are never here: they are mounted at run time (/run/secrets).
VOLUME ["/var/lib/auditseal"]
WORKDIR /var/lib/auditseal
USER auditseal:auditseal
# Long-running services set AUDITSEAL_HEALTHCHECK_URL to their /healthz or metrics endpoint
# (the compose file does); one-shot commands exit before the first probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "auditseal.infra.healthcheck"]
ENTRYPOINT ["auditseal"]
CMD ["--help"]
