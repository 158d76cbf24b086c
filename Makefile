# The README's commands. `make demo` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/infergate-billing
STAMP  := $(VENV)/.installed
DEMO_DB ?= out/demo.duckdb
SAMPLE_DAYS := 2026-11-29 2026-11-30 2026-12-01

.PHONY: setup demo test lint typecheck bench soak clean samples

$(STAMP): pyproject.toml scripts/check_system.sh
	./scripts/check_system.sh
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## demo: install, run the nightly job over the sample logs, write CSVs (and statements) into out/
demo: $(STAMP)
	rm -f $(DEMO_DB) $(DEMO_DB).wal
	mkdir -p out
	for day in $(SAMPLE_DAYS); do \
	  $(CLI) --db $(DEMO_DB) nightly --date $$day --logs data/sample_logs || exit $$?; \
	done
	$(CLI) --db $(DEMO_DB) export --period 2026-11 --out out
	$(CLI) --db $(DEMO_DB) export --period 2026-12 --out out
	$(CLI) --db $(DEMO_DB) quarantine
	@echo "demo done: see out/ and query $(DEMO_DB)"

## test: install and run the whole test suite (what CI runs)
test: $(STAMP)
	$(VENV)/bin/ruff check pipeline pricing reports tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

## soak: the reliability checks of docs/reliability.md at full size (tens of minutes, a few GB
## of disk): kills, fuzz, planted secrets, 50 MB line / 10M lines / 100K accounts; prints counts
soak: $(STAMP)
	$(PY) -m tests.soak.soak

## samples: regenerate data/sample_logs deterministically
samples: $(STAMP)
	$(CLI) sample-logs --out data/sample_logs

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
