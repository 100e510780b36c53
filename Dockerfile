# syntax=docker/dockerfile:1.7
# Every Hookhub image, one per service, built from the repository root (the uv workspace):
#   docker build --build-arg SERVICE=hub-api   -t hookhub-api .
#   docker build --build-arg SERVICE=consumers -t hookhub-consumers .
#   docker build --build-arg SERVICE=operator  -t hookhub-operator .
# An image holds its service's packages and what uv.lock gives them, nothing else; its port,
# healthcheck and default command are in the service's stage at the end of this file.
# SERVICE has no default: a build that forgets it stops at the last FROM (blank), rather than
# making one service's image under another's name.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
ARG SERVICE

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=uv /uv /usr/local/bin/uv
# bytecode compiled at build time (the runtime file system is read-only); the venv is copied
# whole into the runtime stage, so no links into the uv cache
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# The workspace packages each image installs. hub-api and the operator also install the consumers'
# package, never importing it: hub-api declares every consumer's queues, and the operator shows
# them (queues, parking lots, unrouted events), from their specs, which the consumers register as
# entry points (group `hookhub.consumers`), and entry points are read only from installed packages.
RUN case "${SERVICE}" in \
      hub-api)   echo "--package hookhub-api --package hookhub-consumers" ;; \
      consumers) echo "--package hookhub-consumers" ;; \
      operator)  echo "--package hookhub-operator --package hookhub-consumers" ;; \
      *) echo "build with --build-arg SERVICE=hub-api, consumers or operator (not '${SERVICE}')" >&2; exit 1 ;; \
    esac > /src/packages
# Third-party dependencies first, from the lock file alone: this layer is rebuilt only when
# uv.lock or a pyproject changes, not on every code change.
COPY pyproject.toml uv.lock ./
COPY libs/hookhub/pyproject.toml libs/hookhub/
COPY hub-api/pyproject.toml hub-api/
COPY eventlog/pyproject.toml eventlog/
COPY endpoints/pyproject.toml endpoints/
COPY consumers/pyproject.toml consumers/
COPY dev/pyproject.toml dev/
COPY operator/pyproject.toml operator/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace $(cat /src/packages)
# The event log's and the consumers' sources go into every image: each installs the consumers'
# package (above), which depends on the event log, as the operator does. For the consumers image
# the last COPY repeats one of these.
COPY libs/hookhub libs/hookhub
COPY eventlog eventlog
COPY endpoints endpoints
COPY consumers consumers
COPY ${SERVICE} ${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable $(cat /src/packages)

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --gid 0 --no-create-home --home-dir /app hookhub \
    && mkdir -p /app/var && chown 10001:0 /app/var
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001
ENTRYPOINT ["hookhub"]

# One stage per service: what differs between the images once they are built.

FROM runtime AS hub-api
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

# One process per consumer (`hookhub consume <name>`), and `hookhub topology declare` /
# `hookhub dlq ...` for operators.
FROM runtime AS consumers
ENV HOOKHUB_PROBE_PORT=9100
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('HOOKHUB_PROBE_PORT', '9100'), timeout=2)"]
# no default command: each service names its consumer, e.g. `consume payments`

# The console and the event log's read API (`hookhub operator`), behind Kong's /operator route.
FROM runtime AS operator
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=2)"]
CMD ["operator", "--host", "0.0.0.0", "--port", "8001"]

# The image: the stage named by SERVICE (BuildKit builds only the stages it needs).
FROM ${SERVICE}
