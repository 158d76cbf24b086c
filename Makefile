# The README's commands. `make demo` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/infergate-billing
# Two install levels: the runtime package alone (what `make demo` and an operator need: no
# pyspark, no Java), and the runtime plus the dev and spark extras (what `make test` needs:
# the engines-agree suite runs the rating SQL on Spark too).
RUNTIME := $(VENV)/.installed-runtime
STAMP   := $(VENV)/.installed
DEMO_DB ?= out/demo.duckdb

.PHONY: setup setup-runtime demo test test-fast lint typecheck bench bench-smoke soak fuzz clean samples schema-doc spark-sql spark-bench spec-oracle

$(RUNTIME): pyproject.toml scripts/check_system.sh
	./scripts/check_system.sh
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	./scripts/check_system.sh --spark
	$(VENV)/bin/pip install -q -e '.[dev,spark]'
	touch $(STAMP)

## setup: the development install (runtime + dev + spark extras), what `make test` uses
setup: $(STAMP)

## setup-runtime: the runtime package alone (no pyspark, no Java), what `make demo` uses
setup-runtime: $(RUNTIME)

## demo: install the runtime package only, run the nightly job over the sample logs, issue statements, write everything into out/
demo: $(RUNTIME)
	rm -rf out/statements out/credit_notes $(DEMO_DB) $(DEMO_DB).wal
	mkdir -p out
	$(CLI) --db $(DEMO_DB) nightly --date 2026-11-29 --logs data/sample_logs
	$(CLI) --db $(DEMO_DB) nightly --date 2026-11-30 --logs data/sample_logs
	$(CLI) --db $(DEMO_DB) statements --period 2026-11 --out out
	$(CLI) --db $(DEMO_DB) statements --period 2026-11 --finalize --issue-date 2026-12-01 --out out
	@echo "--- finance credits a line of an issued statement: a credit note in its own sequence"
	$(CLI) --db $(DEMO_DB) credit-note --statement IG-2026-11-000001 --line 15 --issue-date 2026-12-03 \
		--reason "Service credit: GPT-5.5 Pro output degraded on 2026-11-29" --out out
	@echo "--- December's file carries late November records: they become adjustments on December's statements"
	$(CLI) --db $(DEMO_DB) nightly --date 2026-12-01 --logs data/sample_logs
	$(CLI) --db $(DEMO_DB) statements --period 2026-12 --finalize --issue-date 2027-01-01 --out out
	$(CLI) --db $(DEMO_DB) export --period 2026-11 --out out
	$(CLI) --db $(DEMO_DB) export --period 2026-12 --out out
	$(CLI) --db $(DEMO_DB) quarantine --limit 10
	@echo "demo done: statements in out/statements/, finance CSVs in out/, database $(DEMO_DB)"

# pytest-xdist workers for `make test` and `make test-fast` (CI has 2 cores). A module's tests
# stay on one worker (loadfile), so a module-scoped fixture (the demo flow of test_cli.py) is
# built once. Not loadgroup: with pytest 9 its xdist_group marks do not group (seen with 3.8).
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile
# One DuckDB thread per test process: two workers with a thread per core each oversubscribe the
# two cores (8-12% more CPU and wall on the credit and statement modules). Inherited by the CLI
# processes the tests start. `make test TEST_DUCKDB_THREADS=` leaves DuckDB's default.
TEST_DUCKDB_THREADS ?= 1
test test-fast fuzz: export INFERGATE_DUCKDB_THREADS = $(TEST_DUCKDB_THREADS)

## test: install and run lint, type checks and the whole test suite on TEST_WORKERS processes (what CI runs)
test: $(STAMP)
	$(VENV)/bin/ruff check core pipeline pricing reports tests bench
	$(VENV)/bin/ruff format --check core pipeline pricing reports tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) --durations=30

## test-fast: lint and the unit and SQL tests only (not the `slow` ones: CLI processes, JVM, kills), while you work
test-fast: $(STAMP)
	$(VENV)/bin/ruff check core pipeline pricing reports tests bench
	$(VENV)/bin/ruff format --check core pipeline pricing reports tests bench
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) -m "not slow"

## bench: the nightly benchmark, 1M attempts (BENCH_N=10000000 for a busy day); see docs/performance.md
bench: $(STAMP)
	$(PY) bench/bench.py

## bench-smoke: the same benchmark on a tiny day, to check it runs (the test suite runs it too)
bench-smoke: $(STAMP)
	BENCH_N=2000 BENCH_ACCOUNTS=3 BENCH_HISTORY_DAYS=2 BENCH_RECOUNT_N=200 BENCH_RECOUNT_ATTEMPTS=500 $(PY) bench/bench.py

## schema-doc: regenerate docs/schema.md from the COMMENTs in pipeline/migrations (a test fails when stale)
schema-doc: $(RUNTIME)
	$(CLI) schema-doc > docs/schema.md.tmp && mv docs/schema.md.tmp docs/schema.md

## spark-bench: two nights of generated days (the second with a history), then the first resent, on DuckDB and on Spark local[1] and local[2] (SPARK_BENCH_N requests a day); see docs/scale.md and docs/spark.md
SPARK_BENCH_N ?= 200000
spark-bench: $(STAMP)
	$(PY) bench/spark_bench.py --nightly --nights 2 --resend --n $(SPARK_BENCH_N)

## spec-oracle: an independent implementation of SPEC.md (tools/spec_oracle, written without reading rate.sql) against this checkout, on generated days and hand-made scenarios; prints what agrees and every difference (~3 min)
spec-oracle: $(STAMP)
	tools/spec_oracle/run_diff.sh .

## spark-sql: regenerate pipeline/sql/rate.spark.sql from rate.sql (pinned sqlglot; a test fails while stale)
spark-sql: $(STAMP)
	$(PY) -m pipeline.spark.sqlgen

## soak: the reliability checks of docs/reliability.md at full size (tens of minutes, a few GB
## of disk): kills, fuzz, planted secrets, 50 MB line / 10M lines / 100K accounts; prints counts
soak: $(STAMP)
	$(PY) -m tests.soak.soak

## fuzz: the whole-run properties and the kills at full depth (INFERGATE_TEST_DEPTH=full), what
## `make test` runs a smoke of: every hypothesis example (`make test`: a sixth, at least 2), the
## crash matrix at all 29 named points of a nightly (`make test`: one point per step, 11), the
## Spark kills (`make test`: none; a DuckDB nightly's kills stay), the executors' nights both
## on Spark from a path and a URI, the Spark tests marked `deep` (the bench smoke, replay of URI
## inputs, the probe's and the tasks' mechanics; `make test` keeps the engines agreeing), the
## PDF byte-identity check in every statement layout (`make test`: 1, 2 and the current one),
## forty random billing histories reverted in full (`make test`: one), the credit-note
## scenarios repeated with superseded money rules (`make test`: one per rule) (tests/conftest.py,
## examples, FULL_DEPTH, superseded and deep); 13-30 min on 2 cores
FUZZ_MODULES := tests/test_properties.py tests/test_incremental.py tests/test_json_content.py \
	tests/test_bounds.py tests/test_hostile_input.py tests/test_canonical_fast_path.py \
	tests/faults/test_crash.py tests/spark/test_spark_kill.py tests/spark/test_nightly_on_executors.py \
	tests/test_credit_balances.py tests/reports/test_render.py tests/test_credit_histories.py \
	tests/test_credit_note_rule8.py tests/test_credit_note_rule9.py tests/test_credit_note_rule9_review.py \
	tests/test_credit_open_defects.py tests/spark/test_spark_bench.py tests/spark/test_remote_logs.py
fuzz: $(STAMP)
	INFERGATE_TEST_DEPTH=full $(VENV)/bin/pytest $(PYTEST_PARALLEL) $(FUZZ_MODULES)

## samples: regenerate data/sample_logs deterministically
samples: $(RUNTIME)
	$(CLI) sample-logs --out data/sample_logs

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
