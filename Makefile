# klinecast: the targets README, .ci/run and .gitlab-ci.yml call.
#   make setup   .venv with everything the project needs (Debian packages included)
#   make run     the main job: make data, then dvc repro over params.yaml
#   make test    lint + the test suite (it also runs .gitlab-ci.yml's lint and test jobs
#                through gitlab-ci-local, which `make setup` installs from npm)
PYTHON ?= python3.11
VENV := .venv
BIN ?= $(CURDIR)/$(VENV)/bin
# Targets that need the venv depend on $(SETUP); tests that bring their own venv set SETUP=.
SETUP ?= setup
export PATH := $(BIN):$(PATH)

# The dev and CI machines cannot reach data.binance.vision. When the shared mirror
# (real BTCUSDT 1h archives, 2017-08..2022-05) sits beside the repo and no
# KLINECAST_BASE_URL is set, `make data` ingests from it and stops where it ends. The seed's
# split (out of sample 2022-01..05) lies inside it, so `make run` runs params.yaml as committed.
MIRROR := $(wildcard $(or $(KLINECAST_SHARED),$(CURDIR)/../shared)/binance-mirror)
MIRROR_END := 2022-05-31
ifeq ($(origin KLINECAST_BASE_URL),undefined)
ifneq ($(MIRROR),)
INGEST_FLAGS ?= --base-url $(MIRROR) --end $(MIRROR_END)
endif
endif

.PHONY: setup venv lock images debian-packages data data-push data-pull pipeline-submit run run-example serve test test-fast lint docs validate-manifests \
	bench bench-tune bench-workers bench-serve bench-faults bench-trader-faults fuzz-serving bench-pipeline bench-compare bench-power check-shadow clean

# Debian packages the tests use, installed only when missing:
#   postgresql         a private server when none answers on 127.0.0.1:5432
#   redis-server       a private online store when none answers on 127.0.0.1:6379
#   kubernetes-client  `kubectl kustomize` renders the overlays (kustomize v2 in Debian's 1.20)
#   rsync, npm         gitlab-ci-local's shell executor; npm installs it (below)
#   chromium           headless checks of the pages people look at (DVC plots, tuning, report)
DEBIAN_NEEDS := $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
	$(if $(shell command -v redis-server),,redis-server) \
	$(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(shell command -v kubectl),,kubernetes-client) \
	$(if $(shell command -v rsync),,rsync) $(if $(shell command -v npm),,npm)
debian-packages:
	@test -z "$(strip $(DEBIAN_NEEDS))" || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_NEEDS))

# gitlab-ci-local runs .gitlab-ci.yml's jobs on this machine; 4.75 wants Node 22, which the
# npm registry ships as the `node` package, so the machine's own Node version does not matter.
CI_TOOLS := $(CURDIR)/build/ci-tools
GITLAB_CI_LOCAL_VERSION := 4.75.1
$(CI_TOOLS)/.installed:
	npm install --silent --no-audit --no-fund --prefix $(CI_TOOLS) \
		node@22 gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION)
	touch $@

# `dvc plots show` fills this template (.dvc/config plots.html_template): Vega, Vega-Lite and
# vega-embed from npm, inlined, so the page draws without internet (DVC's own loads a CDN).
VEGA_TOOLS := $(CURDIR)/build/vega
VEGA_PACKAGES := vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
PLOTS_TEMPLATE := build/dvc-plots-template.html
$(VEGA_TOOLS)/.installed:
	npm install --silent --no-audit --no-fund --prefix $(VEGA_TOOLS) $(VEGA_PACKAGES)
	touch $@

$(PLOTS_TEMPLATE): $(VEGA_TOOLS)/.installed
	mkdir -p $(dir $@)
	{ printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>klinecast: DVC plots</title>\n'; \
	  for name in vega vega-lite vega-embed; do \
	    printf '<script>\n'; grep -v '^//# sourceMappingURL=' $(VEGA_TOOLS)/node_modules/$$name/build/$$name.min.js; printf '\n</script>\n'; \
	  done; \
	  printf '<style>body { font-family: system-ui, sans-serif; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'; \
	} > $@.part && mv $@.part $@

setup: debian-packages $(VENV)/.installed $(CI_TOOLS)/.installed $(PLOTS_TEMPLATE)

# The venv alone, for jobs that run klinecast but no tests (.gitlab-ci.yml's pipeline job).
venv: $(VENV)/.installed

# Every install takes its versions from the lock (-c: exact pins for whatever an extra needs),
# the build backend included (--no-build-isolation, so setuptools comes from the lock too).
LOCK := requirements.lock
PIP_INSTALL = $(BIN)/python -m pip install --quiet --constraint $(LOCK)

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) setuptools
	$(PIP_INSTALL) --no-build-isolation --editable '.[all,test,docs]'
	touch $@

# requirements.lock: exact versions of every package of every extra, resolved by uv from
# pyproject.toml's ranges for Python 3.11 on Linux. uv itself lives in its own small venv so
# that a lock which no longer fits pyproject.toml can still be refreshed.
UV_VENV := $(CURDIR)/build/uv
lock:
	test -x $(UV_VENV)/bin/uv || ($(PYTHON) -m venv $(UV_VENV) && \
		$(UV_VENV)/bin/python -m pip install --quiet $(if $(wildcard $(LOCK)),--constraint $(LOCK)) uv)
	$(UV_VENV)/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' \
		$(if $(UPGRADE),--upgrade) --quiet --output-file $(LOCK)

data: $(SETUP)
	klinecast ingest $(INGEST_FLAGS)
	dvc add --quiet data/raw

# The DVC remote (.dvc/config: s3://klinecast-data/dvc; AWS_ENDPOINT_URL and the AWS_* keys
# from the environment). push: the raw archives and every stage output in the cache.
# pull: the raw archives (data.dvc); `dvc repro` rebuilds the rest, or skips what it finds.
data-push: $(SETUP)
	dvc push

data-pull: $(SETUP)
	dvc pull data.dvc

# CI's pipeline job: check params, then compile and submit the training pipeline to $KFP_HOST
# (components in $KLINECAST_PIPELINE_IMAGE; the run's pods as klinecast-pipeline).
pipeline-submit: $(SETUP)
	@test -n "$(KFP_HOST)" || (echo "pipeline-submit: set KFP_HOST to the KFP API URL" >&2; exit 2)
	klinecast validate-params --params-only
	klinecast pipeline compile --pipeline training --out build/training_pipeline.yaml
	klinecast pipeline submit --pipeline training --host "$(KFP_HOST)" --experiment klinecast \
		--namespace klinecast --service-account klinecast-pipeline

# The main job. It changes no tracked file but dvc.lock (and data.dvc when new data arrived);
# a second run with nothing new is a no-op. To try other params without editing params.yaml:
# `dvc exp run -S key=value` (docs/getting-started.md#trying-other-params).
run: data
	dvc repro

# The main job on another params file, in a git worktree of HEAD under build/example (this
# checkout and its params.yaml stay as they are; the outputs are in build/example/reports):
#   make run-example                                    the five symbols (docs/concepts.md#several-symbols)
#   make run-example EXAMPLE=examples/seed-params.yaml  any other params file
EXAMPLE ?= examples/five-symbols.yaml
EXAMPLE_DIR := $(CURDIR)/build/example
run-example: $(SETUP)
	test -f $(EXAMPLE) || (echo "run-example: $(EXAMPLE) does not exist" >&2; exit 2)
	test -e $(EXAMPLE_DIR)/.git || git worktree add --quiet --detach $(EXAMPLE_DIR) HEAD
	git -C $(EXAMPLE_DIR) checkout --quiet --force --detach $$(git rev-parse HEAD)
	cp $(EXAMPLE) $(EXAMPLE_DIR)/params.yaml
	$(MAKE) -C $(EXAMPLE_DIR) run SETUP= BIN=$(BIN) \
		$(if $(MIRROR),KLINECAST_SHARED=$(abspath $(MIRROR)/..))

# The model server processes for the production (else candidate) model; Ctrl+C stops them.
PREDICTOR_PORT ?= 8080
TRANSFORMER_PORT ?= 8081
serve: $(SETUP)
	klinecast serve --predictor-port $(PREDICTOR_PORT) --transformer-port $(TRANSFORMER_PORT)

lint: $(SETUP)
	ruff check src tests benchmarks

# Render both kustomize overlays and validate every object; .gitlab-ci.yml's lint job runs it.
validate-manifests: $(SETUP)
	pytest -q -p no:cacheprovider tests/platform/test_kustomize.py tests/platform/test_trader_manifest.py \
		tests/platform/test_serving_packaging.py::test_committed_base_manifests_are_current

# The documentation site (mkdocs.yml), strict: a broken link or a stale docstring fails it.
docs: $(SETUP)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet

# Two workers, a test module each at a time (pytest-xdist): most tests wait on servers and
# subprocesses, so two share the two cores well; a module's fixtures stay in one process. They
# take the modules in tests/conftest.py's order, the longest first (--no-loadscope-reorder).
# The images the container tests run are built first, as a build step of their own (a cold
# build takes about 5 minutes: build/images/images.json); their tests then find them built.
# podman builds as root only: elsewhere those tests say why they skip.
test: lint docs
	if [ "$$(id -u)" = 0 ]; then $(MAKE) images; fi
	pytest -n 2 --dist loadfile --no-loadscope-reorder

# For development: the suite without the end-to-end jobs and the slow studies (markers e2e and
# slow, pyproject.toml); `make test` and .ci/run still run everything.
test-fast: $(SETUP)
	ruff check src tests benchmarks
	pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not e2e and not slow"

# Both images built for real with Debian's podman, as root, on a local Debian base (.ci/images):
# podman, buildah, debootstrap and runc are installed when missing.
IMAGE_NEEDS := $(if $(shell command -v podman),,podman) $(if $(shell command -v buildah),,buildah) \
	$(if $(shell command -v debootstrap),,debootstrap) $(if $(shell command -v runc),,runc)
images:
	@test -z "$(strip $(IMAGE_NEEDS))" || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(IMAGE_NEEDS))
	.ci/images

# Benchmarks write JSON to benchmarks/results/ (not timed tests: the machines are shared).
bench: bench-tune bench-workers bench-serve bench-faults bench-trader-faults bench-pipeline bench-compare

# Then the five-symbol case (bench-workers: each symbol's trial, a pooled study's, workers).
bench-tune: data
	dvc repro features
	python benchmarks/bench_tune.py
	$(MAKE) bench-workers

# The seed's setup (examples/seed-params.yaml) against params.yaml on the same candles and split.
# Tuning workers sharing one PostgreSQL study (1 vs 2), and each symbol's cost per trial: on
# the five symbols of `make run-example` when it has run, else on BTCUSDT.
EXAMPLE_FEATURES := $(wildcard $(EXAMPLE_DIR)/data/*/features.parquet)
bench-workers: setup
	test -n "$(EXAMPLE_FEATURES)" || test -f data/BTCUSDT/features.parquet || $(MAKE) run
	python benchmarks/bench_workers.py $(if $(EXAMPLE_FEATURES),--params $(EXAMPLE_DIR)/params.yaml \
		--features $(filter %/BTCUSDT/features.parquet,$(EXAMPLE_FEATURES)) \
		$(filter-out %/BTCUSDT/features.parquet,$(EXAMPLE_FEATURES)),--features data/BTCUSDT/features.parquet)

bench-compare: data
	dvc repro candles
	python benchmarks/compare_rules.py

# Power and size of the default search and gate: planted edges of three shapes at three
# strengths (5 seeds each) and 20 null series, 2 at a time (docs/research.md; about an hour).
# POWER_FLAGS passes options, e.g. POWER_FLAGS='--only null --nulls 40'.
bench-power: setup
	python benchmarks/power.py $(POWER_FLAGS)

# Needs a model artifact (models/BTCUSDT/candidate, from make run).
bench-serve: setup
	test -f models/BTCUSDT/candidate/model.json || $(MAKE) run
	python benchmarks/bench_serve.py

# Serving while the online store is stopped, then hung, under load (needs models/BTCUSDT/candidate).
bench-faults: setup
	test -f models/BTCUSDT/candidate/model.json || $(MAKE) run
	python benchmarks/bench_faults.py

# The Open Inference Protocol's OpenAPI spec fuzzed against both servers (schemathesis).
fuzz-serving: setup
	test -f models/BTCUSDT/candidate/model.json || $(MAKE) run
	python benchmarks/fuzz_serving.py

# The trader under the exchange's faults (docs/trading.md): kill at each step of an order, late
# landing, orders left open, base-asset fees over 48 hours, the five-symbol book; on the mirror.
bench-trader-faults: setup
	python benchmarks/bench_trader_faults.py

# A model's life replayed on the five-symbol example (docs/model-life.md): a fortnight through the
# book's and the challengers' servers; each shadow book against its offline backtest.
check-shadow: setup
	python benchmarks/shadow_replay.py

# Local KFP pipeline run vs dvc repro on examples/small-params.yaml.
bench-pipeline: setup
	python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build reports
	git worktree prune
