# klinecast: the targets README, .ci/run and .gitlab-ci.yml call.
#   make setup   .venv with everything the project needs (Debian packages included)
#   make run     the main job: make data, then dvc repro over params.yaml
#   make test    lint + the test suite
PYTHON ?= python3.11
VENV := .venv
BIN ?= $(CURDIR)/$(VENV)/bin
# Targets that need the venv depend on $(SETUP); tests that bring their own venv set SETUP=.
SETUP ?= setup
export PATH := $(BIN):$(PATH)

# The dev and CI machines cannot reach data.binance.vision. When the shared mirror
# (real BTCUSDT 1h archives, 2017-08..2021-12) sits beside the repo and no
# KLINECAST_BASE_URL is set, `make data` ingests from it and stops where it ends.
MIRROR := $(wildcard $(CURDIR)/../shared/binance-mirror)
ifeq ($(origin KLINECAST_BASE_URL),undefined)
ifneq ($(MIRROR),)
INGEST_FLAGS ?= --base-url $(MIRROR) --end 2021-12-31
# The mirror ends before the seed's 2022 out-of-sample span, so there the main job runs as a
# DVC experiment whose split lies inside the mirror (dvc exp run -S writes it to params.yaml).
RUN_SET ?= split.in_sample_end=2020-12-31 split.out_of_sample_start=2021-01-01 \
	split.out_of_sample_end=2021-12-31
endif
endif

.PHONY: setup debian-packages data data-push data-pull run serve test lint bench bench-tune bench-serve bench-pipeline clean

# Tests start a private PostgreSQL from these binaries when none answers on 127.0.0.1:5432.
debian-packages:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(MAKE) debian-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet --editable '.[all,test]'
	touch $@

data: setup
	klinecast ingest $(INGEST_FLAGS)
	dvc add --quiet data/raw

# The DVC remote (.dvc/config: s3://klinecast-data/dvc; AWS_ENDPOINT_URL and the AWS_* keys
# from the environment). push: the raw archives and every stage output in the cache.
# pull: the raw archives (data.dvc); `dvc repro` rebuilds the rest, or skips what it finds.
data-push: $(SETUP)
	dvc push

data-pull: $(SETUP)
	dvc pull data.dvc

# `make run RUN_SET="key=value ..."` overrides params for this run (dvc exp run -S).
run: data
ifeq ($(strip $(RUN_SET)),)
	dvc repro
else
	dvc exp run $(foreach s,$(RUN_SET),-S $(s))
endif

# The model server processes for the production (else candidate) model; Ctrl+C stops them.
serve: setup
	klinecast serve

lint: setup
	ruff check src tests components pipelines benchmarks

test: lint
	pytest

# Benchmarks write JSON to benchmarks/results/ (not timed tests: the machines are shared).
bench: bench-tune bench-serve bench-pipeline

bench-tune: data
	dvc repro features
	python benchmarks/bench_tune.py

# Needs a model artifact (models/candidate, from make run).
bench-serve: setup
	test -f models/candidate/model.json || $(MAKE) run
	python benchmarks/bench_serve.py

# Local KFP pipeline run vs dvc repro on pipelines/small-params.yaml.
bench-pipeline: setup
	python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build reports
