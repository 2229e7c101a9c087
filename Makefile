# The README's commands. `make run`: the service with the embedded default (SQLite, no
# servers). `make test`: the whole suite against PostgreSQL and Redis on 127.0.0.1, then
# the tests marked `sqlite` (every engine test) again on the embedded default (no DB_HOST,
# no REDIS_HOST).
# The suite's shared test keys would soon hit the default rate limit: it runs with a huge one
# (the rate-limit tests set their own limits and keys).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TEST_ENV := DB_HOST=$${DB_HOST:-127.0.0.1} DB_USER=$${DB_USER:-postgres} \
	REDIS_HOST=$${REDIS_HOST:-127.0.0.1} DEBUG=False LOG_FILE=$${LOG_FILE:-} \
	SECRET_KEY=test-secret-key-for-the-suite SAGA_API_KEY=test-saga-key \
	INTERNAL_API_KEY=test-internal-key PROMETHEUS_MULTIPROC_DIR= \
	RATE_LIMIT_MAX_REQUESTS=$${RATE_LIMIT_MAX_REQUESTS:-1000000}
# The embedded default: Django on SQLite (a test database file per pytest process, so the
# SQLite run is parallel too), no Redis: the lease alone fences, in-process cache.
SQLITE_TEST_ENV := $(TEST_ENV) DB_HOST= REDIS_HOST=

.PHONY: run test lint format bench soak demo clean tools docker-check docker-emulate venv \
	screenshots bench-console

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

# Both runs always happen; either failing fails the target. Exit status 5 ("no tests
# collected") of the SQLite run is fine: PYTEST_ARGS may select no `sqlite` test.
test: venv tools
	$(TEST_ENV) $(BIN)/pytest -n $${TEST_PROCESSES:-2} $(PYTEST_ARGS); postgres=$$?; \
	$(SQLITE_TEST_ENV) $(BIN)/pytest -n $${TEST_PROCESSES:-2} -m sqlite $(PYTEST_ARGS); \
	sqlite=$$?; [ $$sqlite -eq 5 ] && sqlite=0; \
	echo "make test: PostgreSQL run exit $$postgres, SQLite run exit $$sqlite"; \
	[ $$postgres -eq 0 ] && [ $$sqlite -eq 0 ]

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data logs run staticfiles .pytest_cache tools/node_modules

# Node tools for the Docker checks (dclint and the compose-spec schema it ships).
tools/node_modules/.installed: tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $@

tools: tools/node_modules/.installed

# The Docker files without a Docker engine: linters, schema, and the commands the image and
# docker-compose run (collectstatic, migrate without secrets, check-config, HEALTHCHECK).
docker-check: venv tools
	$(BIN)/hadolint Dockerfile
	tools/node_modules/.bin/dclint docker-compose.yml --max-warnings 0
	$(TEST_ENV) $(BIN)/pytest -n $${TEST_PROCESSES:-2} tests/unit/test_docker_files.py \
		tests/unit/test_gunicorn_config.py tests/e2e/test_build_emulation.py $(PYTEST_ARGS)

# Slow, not in CI: the image's pip install in a fresh venv, then its build step.
docker-emulate:
	rm -rf /tmp/saga-image-venv && $(PYTHON) -m venv /tmp/saga-image-venv
	/tmp/saga-image-venv/bin/pip install --quiet --no-cache-dir -r requirements.txt
	DEBUG=False STATIC_ROOT=/tmp/saga-image-static /tmp/saga-image-venv/bin/python \
		manage.py collectstatic --noinput -v 0
	$(TEST_ENV) /tmp/saga-image-venv/bin/gunicorn --check-config -c gunicorn.conf.py \
		saga_orchestrator.wsgi
	@echo "image build emulated: dependencies, collectstatic and gunicorn --check-config OK"

# The service, the bare reference and the ratios (docs/performance.md); BENCH_ARGS=--sweep
# adds throughput per saga-worker and Gunicorn worker count.
bench: venv
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

# A bounded chaos soak (bench/soak.py): ~1,000 sagas against Gunicorn, two saga workers,
# PostgreSQL (a database of its own, `saga_soak`) and a throwaway redis-server, with
# participants answering at random (2xx, 5xx, 4xx, slow, dripped) while saga workers,
# Gunicorn workers and Redis are killed. It checks the invariants from what participants
# recorded and what the API says; last line `N passed, M failed`, exit 1 on any failure.
# SOAK_SAGAS / SOAK_SEED / SOAK_RATE size it; SOAK_ARGS for more (`--help` lists them).
soak: venv
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The console's screenshots in docs/ (the README shows them): the demo's sagas list and a
# compensated saga, taken and looked at by the console's Chromium test (PostgreSQL).
screenshots: venv
	SCREENSHOTS_DIR=docs $(TEST_ENV) $(BIN)/pytest -p no:xdist -q \
		tests/e2e/test_console_browser.py -k "list_shows or timeline"

# The console's sagas list timed with 100,000 sagas in a throwaway database (README).
bench-console: venv
	$(BIN)/python bench/console_list.py $(BENCH_ARGS)
