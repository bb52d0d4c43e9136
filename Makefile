# Two entry points for a fresh machine: `make up` runs the pipeline, `make test` runs every check.
# Both install what they need, idempotently: the virtualenv at .venv (re-installed when
# pyproject.toml changes) and the Kafka jars (cached outside git, in ~/.cache/logorhythms).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: up test lint unit integration install kafka-jars clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@

install: $(INSTALLED)

kafka-jars: $(INSTALLED)
	$(BIN)/python -c "from deploy.local.kafka import ensure_kafka_jars; ensure_kafka_jars()"

up: $(INSTALLED)
	$(BIN)/logorhythms up

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

integration: $(INSTALLED) kafka-jars
	$(BIN)/pytest tests/integration

test: lint kafka-jars
	$(BIN)/pytest

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
