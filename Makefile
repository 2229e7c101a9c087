# The README's commands. `make run`: the service with the embedded default (SQLite, no
# servers). `make test`: the whole suite against PostgreSQL and Redis on 127.0.0.1.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TEST_ENV := DB_HOST=$${DB_HOST:-127.0.0.1} DB_USER=$${DB_USER:-postgres} \
	REDIS_HOST=$${REDIS_HOST:-127.0.0.1} DEBUG=False LOG_FILE=$${LOG_FILE:-} \
	SECRET_KEY=test-secret-key-for-the-suite SAGA_API_KEY=test-saga-key \
	INTERNAL_API_KEY=test-internal-key

.PHONY: run test lint format bench demo clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

run: venv
	DEBUG=$${DEBUG:-True} $(BIN)/python scripts/run_local.py

# The demo participants alone (make run starts them too), on :8009 or DEMO_PORT.
demo: venv
	$(BIN)/python scripts/demo_participants.py

test: venv
	$(TEST_ENV) $(BIN)/pytest -n $${TEST_PROCESSES:-2} $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data logs staticfiles .pytest_cache
