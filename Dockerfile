# The two images, one target each. Build from the repo root:
#   docker build --target pipeline -t IMAGE .   the KFP components, Katib trials, the trader
#                                               and sync CronJobs, the monitor (`klinecast`)
#   docker build --target serving -t IMAGE .    the KServe transformer (and predictor)
# They share the base, the build steps and the project; they differ in the extras they install
# (serving's is smaller, because model-server pods scale out and start often) and their entry
# point. A builder that skips unused stages (BuildKit, podman, kaniko --skip-unused-stages)
# builds only what the target needs.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# A venv with pip's build backend from the lock; the other build stages start from it.
FROM ${PYTHON_IMAGE} AS build
# A CA bundle for pip where the network inspects TLS (`make images` passes the host's); unset,
# pip uses its own.
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml requirements.lock ./
# A stand-in package of the project's name carries the dependencies in layers that only
# pyproject.toml and the lock invalidate; the project itself comes from the wheel below.
RUN mkdir -p src/klinecast && touch README.md src/klinecast/__init__.py \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock setuptools

# The project as a wheel, built once for both images.
FROM build AS wheel
COPY README.md ./
COPY src ./src
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels .

# Each image's dependencies, at the lock's versions.
FROM build AS pipeline-deps
RUN /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock --no-build-isolation ".[pipeline,trader]"

FROM build AS serving-deps
RUN /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock --no-build-isolation ".[serving]"

# What both images run on: xgboost's OpenMP runtime and the unprivileged user. The user has no
# home directory (and the root filesystem is read-only on the cluster), so HOME is /tmp.
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin klinecast
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

FROM runtime AS serving
COPY --from=serving-deps /opt/venv /opt/venv
COPY --from=wheel /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall /tmp/wheels/klinecast-*.whl \
    && rm -rf /tmp/wheels
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "klinecast.serving.server"]
# the model name defaults to params' publish.model_name; KServe passes --model_name anyway
CMD ["transformer", "--storage-uri", "/mnt/models"]

# The last stage: what a build without --target makes.
FROM runtime AS pipeline
COPY --from=pipeline-deps /opt/venv /opt/venv
COPY --from=wheel /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall /tmp/wheels/klinecast-*.whl \
    && rm -rf /tmp/wheels
WORKDIR /app
# params.yaml is what the trader and monitor read (/app/params.yaml); the compiled pipelines
# that `monitor --trigger kfp:` submits are the package's own.
COPY params.yaml ./
USER 10001
ENTRYPOINT ["klinecast"]
CMD ["--help"]
