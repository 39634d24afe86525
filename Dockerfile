# The skewwatch worker image (docker-compose.yml builds it as the `skewwatch` service).
#   docker build -t skewwatch .
#   docker run --rm -e SKEWWATCH_BROKER=kafka://broker:9092 -v "$PWD/baselines.d:/baselines:ro" skewwatch
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged user; its home is the worker's data directory (Faust table state).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/skewwatch skewwatch \
    && mkdir -p /baselines

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY detectors ./detectors
COPY baselines ./baselines
COPY stream ./stream
# The monitors' kernels are C (detectors/_kernels.c): a compiler for the build, removed after it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* /src

# The web server listens on every interface of the container so Prometheus in another container can
# scrape it; it is reachable from outside only through a port you publish (`-p 127.0.0.1:6066:6066`,
# as docker-compose.yml does). It serves /metrics, /status.json and the status page /, with no
# authentication: aggregate statistics, model and feature names, the last alerts; no single request's
# value unless SKEWWATCH_INCLUDE_EXAMPLES is on, and none of Faust's views (the checkpoints are not
# served). To choose the bind address, set SKEWWATCH_WEB_HOST (e.g. a private network's address, or
# 127.0.0.1 for no access from outside the container; the HEALTHCHECK probes 127.0.0.1). deploy/README.md.
ENV SKEWWATCH_WEB_HOST=0.0.0.0 \
    SKEWWATCH_WEB_PORT=6066 \
    SKEWWATCH_BASELINES=/baselines \
    SKEWWATCH_DATA_DIR=/var/lib/skewwatch

USER skewwatch
WORKDIR /var/lib/skewwatch
VOLUME ["/var/lib/skewwatch"]
EXPOSE 6066

# python:3.11-slim has no curl: probe /metrics with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('SKEWWATCH_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["skewwatch"]
CMD ["worker"]
