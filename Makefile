# klinecast: the targets README, .ci/run and .gitlab-ci.yml call.
#   make setup   .venv with everything the project needs (Debian packages included)
#   make run     the main job: make data, then dvc repro over params.yaml
#   make test    lint + the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

# The dev and CI machines cannot reach data.binance.vision. When the shared mirror
# (real BTCUSDT 1h archives, 2017-08..2021-12) sits beside the repo and no
# KLINECAST_BASE_URL is set, `make data` ingests from it and stops where it ends.
MIRROR := $(wildcard $(CURDIR)/../shared/binance-mirror)
ifeq ($(origin KLINECAST_BASE_URL),undefined)
ifneq ($(MIRROR),)
INGEST_FLAGS ?= --base-url $(MIRROR) --end 2021-12-31
endif
endif

.PHONY: setup data run test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

data: setup
	klinecast ingest $(INGEST_FLAGS)
	dvc add --quiet data/raw

run: data
	dvc repro

lint: setup
	ruff check src tests

test: lint
	pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build reports
