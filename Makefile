# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast setup seed lint format lambdas bench bench-smoke mutation

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py seed_demo
	PORTAL_HOST=$(HOST) PORTAL_PORT=$(PORT) .venv/bin/honcho start -f Procfile

test: setup
	$(PY) scripts/run_tests.py $(ARGS)

# The edit-test loop: no Celery worker, browser, slow or fault test (pytest.ini markers),
# spread over FAST_WORKERS pytest-xdist processes (each with its own test database, suffix
# _gw0, _gw1..., and its own moto server). `make test` (and .ci/run) still
# runs everything, serially. `--dist load` hands tests out in collection order, so each
# process keeps pytest-django's order (transactional tests, whose flush empties the tables
# the migrations filled, last); `loadfile` would run them mid-way.
FAST_MARKERS := not worker and not browser and not slow and not fault
FAST_WORKERS ?= 3
test-fast: setup
	$(PY) scripts/run_tests.py -m "$(FAST_MARKERS)" -n $(FAST_WORKERS) --dist load -q $(ARGS)

seed: setup
	$(PY) manage.py seed_demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	$(PY) scripts/check_commit_msg.py

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

lambdas: setup
	bash scripts/build_lambdas.sh

bench: setup
	$(PY) -m bench

bench-smoke: setup
	$(PY) -m bench --smoke

# Mutation testing of media_jobs/pipeline and media_jobs/services (slow; not in .ci/run).
# One module: make mutation ARGS="media_jobs/pipeline/keys.py".
mutation: setup
	$(PY) scripts/mutation.py $(ARGS)
