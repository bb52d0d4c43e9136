# Two entry points for a fresh machine: `make up` runs the pipeline, `make test` runs every check.
# Both install what they need, idempotently: the virtualenv at .venv (re-installed when
# pyproject.toml changes), the Kafka jars and the schema registry (cached outside git, in
# ~/.cache/logorhythms).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# Test files run on this many workers (pytest-xdist; a file's tests stay on one worker, so its
# module fixtures, such as the three-node Kafka, start once). Each worker starts its own broker.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

.PHONY: up test lint unit integration install kafka-jars registry-app client-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv (PyPI, into the virtualenv) installs the project: the same resolution as pip from the same
# index, in seconds instead of minutes (a fresh clone's install was most of CI's set-up time).
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -e '.[test]'
	touch $@

install: $(INSTALLED)

kafka-jars: $(INSTALLED)
	$(BIN)/python -c "from deploy.local.kafka import ensure_kafka_jars; ensure_kafka_jars()"

# The schema registry for the Confluent-framing tests: Apicurio Registry built by Maven from
# deploy/registry/pom.xml (first run: a few minutes), cached in ~/.cache/logorhythms.
registry-app: $(INSTALLED)
	$(BIN)/python -c "from deploy.local.registry import ensure_registry_app; ensure_registry_app()"

# Analysts' real tools, for the SQL endpoint's tests: the official ClickHouse Node.js client and a
# browser driver (npm), the ClickHouse JDBC driver (Maven Central, jars cached outside git) and
# Debian's Chromium (installing it needs root, as on the project's machines and CI).
NODE_CLIENTS := tests/clients/node/node_modules/.installed
JDBC_JARS := $(HOME)/.cache/logorhythms/jdbc
CHROMIUM := /usr/bin/chromium

$(NODE_CLIENTS): tests/clients/node/package.json tests/clients/node/package-lock.json
	cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(JDBC_JARS)/.installed: tests/clients/jdbc/pom.xml
	rm -rf $(JDBC_JARS)
	mvn -q -B -f tests/clients/jdbc/pom.xml dependency:copy-dependencies -DoutputDirectory=$(JDBC_JARS)
	touch $@

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

client-tools: $(NODE_CLIENTS) $(JDBC_JARS)/.installed $(CHROMIUM)

up: $(INSTALLED)
	$(BIN)/logorhythms up

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

integration: $(INSTALLED) kafka-jars registry-app client-tools
	$(BIN)/pytest $(PYTEST_PARALLEL) tests/integration

test: lint kafka-jars registry-app client-tools
	$(BIN)/pytest $(PYTEST_PARALLEL)

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
