# MMIS: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/mmis

.PHONY: run test lint unit pytest pytest-pg bench venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m mmis run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mmis manage makemigrations --check --dry-run -v 1

# SQLite always; with CI=true (or MMIS_TEST_POSTGRES=1) the database tests run again on PostgreSQL.
test: lint
	$(PY) -m pytest -n 2 --dist loadfile
	@if [ "$$CI" = "true" ] || [ -n "$$MMIS_TEST_POSTGRES" ]; then \
		echo "== integration and functional tests on PostgreSQL ($(PG_TEST_URL)) =="; \
		MMIS_DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest -n 2 --dist loadfile tests/integration tests/functional -m "not browser"; \
	fi

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) var/*.sqlite3*
