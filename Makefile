# WIM-Z relay. Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Local development defaults (overridden by the environment or .env).
export DEBUG ?= 1

.PHONY: run test fuzz demo lint typecheck migrate bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt requirements-sim.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt -r requirements-sim.txt
	touch $@ $(VENV)/.run-deps $(VENV)/.sim-deps

$(VENV)/.sim-deps: requirements.txt requirements-sim.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-sim.txt
	touch $@

migrate: $(VENV)/.run-deps
	$(BIN)/python manage.py migrate --noinput

## make run: install, migrate, serve the relay on HOST:PORT (default 127.0.0.1:8000) with daphne.
run: migrate
	$(BIN)/python -m wimz.serve --host $(HOST) --port $(PORT)

## make test: the whole test suite (service tests skip without DATABASE_URL/REDIS_URL, never in CI).
test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

## make fuzz: the fuzz tests (tests/fuzz) at length, each bounded by its count and FUZZ_SECONDS.
FUZZ_EXAMPLES ?= 300
FUZZ_STEPS ?= 60
FUZZ_API_EXAMPLES ?= 50
FUZZ_SECONDS ?= 300
fuzz: $(VENV)/.test-deps
	WIMZ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) WIMZ_FUZZ_STEPS=$(FUZZ_STEPS) WIMZ_FUZZ_API_EXAMPLES=$(FUZZ_API_EXAMPLES) \
	WIMZ_FUZZ_API_COVERAGE=1 WIMZ_FUZZ_SECONDS=$(FUZZ_SECONDS) \
	$(BIN)/pytest -s tests/fuzz/test_protocol_fuzz.py tests/fuzz/test_api_schema.py $(PYTEST_ARGS)

## make demo: a real WebRTC call (aiortc robot + app simulators) through a relay; URL=... to use one; TURN=1 through coturn.
demo: $(VENV)/.sim-deps $(VENV)/.run-deps
	$(BIN)/python -m sim.demo $(if $(URL),--url $(URL),) $(if $(TURN),--turn,)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

## make typecheck: mypy, strict for relay/, devices/ and accounts/ (pyproject.toml lists the modules not strict yet).
typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

## make bench: the benchmark suite (not part of `make test`); BENCH_ARGS="--quick", "--write-docs", … (bench/README.md).
bench: $(VENV)/.test-deps requirements-bench.txt
	$(BIN)/pip install -q -r requirements-bench.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3
