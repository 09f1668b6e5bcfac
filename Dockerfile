# The pipeline image: the KFP components, Katib trials, the trader CronJob and the monitor.
# Build from the repo root: docker build -t IMAGE .
# One image with the `klinecast` CLI as entry point serves all four: they share the library and
# nearly all dependencies, and each is one `klinecast <command>`. Serving has its own, smaller
# image (serving/Dockerfile), because model-server pods scale out and start often.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A CA bundle for pip where the network inspects TLS (`make images` passes the host's); unset,
# pip uses its own.
ARG PIP_CERT
WORKDIR /src
# The dependencies first, in a layer that only pyproject.toml and the lock invalidate (a stand-in
# package of the same name carries them), then the project itself. Exact versions from the
# lock, the build backend included (setuptools, then no build isolation).
COPY pyproject.toml requirements.lock ./
RUN mkdir -p src/klinecast && touch README.md src/klinecast/__init__.py \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock setuptools \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock --no-build-isolation ".[pipeline,trader]"
COPY README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-build-isolation --no-deps --force-reinstall .

FROM ${PYTHON_IMAGE}
# xgboost needs the OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin klinecast
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# params.yaml is what the trader and monitor read (/app/params.yaml); pipelines/ and
# components/ let `monitor --trigger kfp:` submit the training pipeline.
COPY params.yaml ./
COPY components ./components
COPY pipelines ./pipelines
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001
ENTRYPOINT ["klinecast"]
CMD ["--help"]
