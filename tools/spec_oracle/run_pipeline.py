#!/usr/bin/env python3
"""Run the real pipeline over a scenario and dump what it produced. usage: run_pipeline.py CLONE SCENARIO"""
import json, os, subprocess, sys, shutil, csv, glob
CLONE, S = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
W = S + "/work"
DUMP_ONLY = len(sys.argv) > 3
if not DUMP_ONLY: shutil.rmtree(W, ignore_errors=True); os.makedirs(W)
DB = W + "/db.duckdb"
B = [CLONE + "/.venv/bin/infergate-billing", "--db", DB, "--prices", S + "/prices", "--accounts", W + "/accounts.toml",
     "--no-snapshot", "--memory-limit", "1GB"]
log = open(W + "/cli.log", "a")
if not DUMP_ONLY: shutil.copy(S + "/accounts.toml", W + "/accounts.toml")
def run(*a, ok=(0,)):
    p = subprocess.run(B + list(a), cwd=W, capture_output=True, text=True)
    log.write(f"$ {' '.join(a)}\nrc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}\n")
    if p.returncode not in ok: print("WARN rc", p.returncode, a, p.stderr.strip()[-400:], file=sys.stderr)
    return p
plan = json.load(open(S + "/plan.json"))
for st in ([] if DUMP_ONLY else plan):
    if st["op"] == "nightly":
        run("nightly", "--date", st["date"], "--logs", S + "/logs", "--max-quarantine-rate", "1")
    elif st["op"] == "draft":
        run("export", "--period", st["period"], "--out", W + "/out")
        run("statements", "--period", st["period"], "--out", W + "/out")
    elif st["op"] == "ingest":
        run("ingest", *[S + "/logs/" + f for f in st["files"]])
    elif st["op"] == "rate":
        run("rate", "--period", st["period"])
    elif st["op"] == "accounts":
        shutil.copy(S + "/" + st["file"], W + "/accounts.toml")
    elif st["op"] == "finalize":
        run("statements", "--period", st["period"], "--finalize", "--issue-date", st["issue_date"], "--out", W + "/out")
        run("export", "--period", st["period"], "--out", W + "/out")
def q(sql):
    p = subprocess.run(B + ["sql", "--live", "--format", "json", sql], cwd=W, capture_output=True, text=True)
    if p.returncode: print("SQL ERR", sql, p.stderr, file=sys.stderr); return []
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
out = {}
out["attempts"] = q("SELECT r.event_id, r.outcome, r.reason, r.period, r.price_version, r.usage_source, r.input_uncached_tokens,"
    " r.input_cached_tokens, r.output_tokens, r.reasoning_tokens, r.image_tokens, CAST(r.unit_price_input_uncached AS VARCHAR) u0,"
    " CAST(r.unit_price_input_cached AS VARCHAR) u1, CAST(r.unit_price_output AS VARCHAR) u2, CAST(r.charge_input_uncached AS VARCHAR) c0,"
    " CAST(r.charge_input_cached AS VARCHAR) c1, CAST(r.charge_output AS VARCHAR) c2, CAST(r.charge_total AS VARCHAR) ct FROM rated_attempts r")
out["quarantine"] = q("SELECT source_file, source_line, event_id, reason, field, message FROM quarantine")
out["files"] = q("SELECT file_name, lines_read, accepted, duplicates, quarantined FROM ingested_files")
out["statements"] = q("SELECT statement_number, account_id, period, billed_requests, input_uncached_tokens, input_cached_tokens,"
    " output_tokens, CAST(usage_usd AS VARCHAR) usage_usd, CAST(adjustments_usd AS VARCHAR) adjustments_usd, CAST(total_usd AS VARCHAR) total_usd, price_versions FROM statements")
out["issued_lines"] = q("SELECT s.account_id, s.period, l.kind, l.original_period, l.model, l.token_class, CAST(l.unit_price_per_1m AS VARCHAR) u,"
    " l.quantity_tokens, CAST(l.amount AS VARCHAR) amount FROM statement_issued_lines l JOIN statements s USING (statement_number)")
out["lines_now"] = q("SELECT account_id, period, model, token_class, CAST(unit_price_per_1m AS VARCHAR) u, quantity_tokens,"
    " CAST(amount_exact AS VARCHAR) ex, CAST(amount AS VARCHAR) amount FROM printed_statement_lines")
out["daily"] = q("SELECT account_id, CAST(usage_date AS VARCHAR) d, model, billed_requests, CAST(input_uncached_tokens AS BIGINT) t0,"
    " CAST(input_cached_tokens AS BIGINT) t1, CAST(output_tokens AS BIGINT) t2, CAST(spend_exact_usd AS VARCHAR) usd FROM daily_usage")
out["finance"] = {}
for f in glob.glob(W + "/out/finance-summary-*.csv"):
    out["finance"][os.path.basename(f)] = list(csv.DictReader(open(f)))
out["lines_csv"] = []; out["detail_csv"] = []
for f in sorted(glob.glob(W + "/out/statements/*/*-lines.csv")):
    out["lines_csv"] += list(csv.DictReader(open(f)))
for f in sorted(glob.glob(W + "/out/statements/*/*-detail.csv")):
    acct_period = os.path.basename(f)
    for r in csv.DictReader(open(f)): r["_file"] = acct_period; out["detail_csv"].append(r)
json.dump(out, open(S + "/actual.json", "w"), indent=0)
print("pipeline: attempts", len(out["attempts"]), "quarantine", len(out["quarantine"]), "statements", len(out["statements"]))
