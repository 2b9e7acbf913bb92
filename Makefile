# `make run`, `make test` and `make test-fast` work on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLASK_APP := webhook_app

.PHONY: run test test-fast lint worker bench migrate install lock clean

# The test venv takes the deploy lock's pins as constraints, so tests run against what a deploy installs.
# requirements-transcribe.txt (the lock with the transcribe extra) joins them without its hashes: pip would check
# hashes of every package, and cannot for the editable project.
$(STAMP): pyproject.toml requirements.txt requirements-transcribe.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	grep -v '^\.$$' requirements.txt > $(VENV)/constraints.txt
	sed -e '/--hash=/d' -e 's/ \\$$//' requirements-transcribe.txt >> $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/constraints.txt -e '.[test,transcribe]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/alembic upgrade head

run: migrate
	$(BIN)/flask --app webhook_app serve --host 127.0.0.1 --port $(or $(PORT),5000)

worker: migrate
	$(BIN)/flask --app webhook_app worker

# The whole suite (what CI runs): the tests not marked slow spread over the machine's cores, then the slow ones
# (real browsers, gunicorn, worker and redis-server processes) one at a time: they measure timing, and every
# gunicorn on a machine shares one control socket. `make test-fast` is the first half alone, for the edit-test loop.
test: test-fast
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest -n auto -m "not slow" $(PYTEST_ARGS)

# ruff's lint and format checks and mypy, strict on webhook_app/ (all configured in pyproject.toml);
# `$(BIN)/ruff format .` rewrites what the format check would refuse.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Refresh requirements.txt and requirements-transcribe.txt (the deploy locks) after changing pyproject.toml's
# dependencies.
lock: $(STAMP)
	$(BIN)/python scripts/lock.py

bench: $(STAMP)
	$(BIN)/python bench/transcode_bench.py
	$(BIN)/python bench/upload_bench.py
	$(BIN)/python bench/load_bench.py
	$(BIN)/python bench/media_bench.py
	$(BIN)/python bench/transcribe_bench.py

clean:
	rm -rf $(VENV) instance .pytest_cache
