# syntax=docker/dockerfile:1
#
# The upwatch agent, built from pyproject.toml. compose.yaml builds it; on its own:
#   docker build -t upwatch:0.4.0 .
#   docker run --rm -p 127.0.0.1:9877:9877 upwatch:0.4.0
# (host metrics then describe the container; compose.yaml shows how to give it the host's /proc,
# /sys and / instead).
#
# Both stages use the same Python image, so the virtualenv built in the first one (whose scripts
# point at /usr/local/bin/python3.11) runs unchanged in the second. Every dependency has a wheel
# for amd64 and arm64, so the builder needs no compiler.

FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/upwatch
WORKDIR /src
# pyproject.toml names README.md as the long description, so the build needs it too.
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# A regular (not editable) install: the package is copied into the venv, /src is left behind.
RUN /opt/upwatch/bin/pip install . \
    && /opt/upwatch/bin/upwatch --help >/dev/null


FROM python:3.11.14-slim-bookworm

ARG UPWATCH_VERSION=0.4.0
LABEL org.opencontainers.image.title="upwatch" \
      org.opencontainers.image.description="Prometheus exporter for HTTP endpoint probes and host metrics" \
      org.opencontainers.image.version="${UPWATCH_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/upwatch/upwatch" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# A fixed, unprivileged uid/gid: files mounted into the container (upwatch.yml, TLS files) only
# need to be readable by 10001 or by everyone.
RUN groupadd --system --gid 10001 upwatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin upwatch

# The data directory's mount point, owned by the agent's user: a named volume mounted here starts
# with this owner (compose.yaml sets UPWATCH_DATA_DIR to it; without it nothing is kept).
RUN mkdir -p /var/lib/upwatch && chown 10001:10001 /var/lib/upwatch && chmod 700 /var/lib/upwatch

COPY --from=builder /opt/upwatch /opt/upwatch
# The example config, so the image runs on its own; compose.yaml mounts the repository's copy here.
COPY upwatch.yml /etc/upwatch/upwatch.yml

# Logs are JSON lines when stderr is not a terminal, as in a container.
ENV PATH="/opt/upwatch/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
EXPOSE 9877

# No curl in the slim image: the venv's Python asks /-/healthy (200 while the process serves).
# It follows the default listen address; a container started with another --listen port needs
# its own healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4).status != 200)"]

# upwatch handles SIGTERM (ordered shutdown, exit 0) and SIGHUP (reload) itself as PID 1.
ENTRYPOINT ["upwatch"]
CMD ["serve", "--config", "/etc/upwatch/upwatch.yml", "--listen", ":9877"]
