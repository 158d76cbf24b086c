#!/bin/bash
# Differential of the independent SPEC oracle against the InferGate pipeline of a clone.
# usage: run_diff.sh CLONE_PATH [scenario ...]   (clone must have .venv, i.e. `make setup` done)
# Written from SPEC.md alone, without reading the pipeline's rating SQL (README, "An
# independent check"); outputs go to $SPEC_ORACLE_OUT (default /tmp/spec-oracle)/<commit>/.
# Scenarios: s1 s4 (random, seeds 1/4; s4 with .gz/.zst), s2 s3 s5 (hand-made R10/re-ingest/rounding/R1), repro-* (findings)
set -u
CLONE=$(cd "$1" && pwd); shift
H=$(cd "$(dirname "$0")" && pwd)
PY=$CLONE/.venv/bin/python            # oracle needs tiktoken, bpe_openai, zstandard (all in the project venv)
TAG=$(cd "$CLONE" && git rev-parse --short HEAD 2>/dev/null || echo x)
SCEN=${*:-"s1 s4 seed-9 s2 s3 s5 s6 s7 s8 s9p s10p $(cd $H/scenarios && ls -d repro-* 2>/dev/null | tr "\n" " ")"}
OUT=${SPEC_ORACLE_OUT:-/tmp/spec-oracle}/$TAG; mkdir -p "$OUT"
for s in $SCEN; do
  D=$OUT/$s; rm -rf "$D"; mkdir -p "$D"
  case $s in
    s1) python3 $H/gen.py "$D" 1 300 ;;
    seed-*) python3 $H/gen.py "$D" ${s#seed-} 400 ;;
    s4) python3 $H/gen.py "$D" 4 250 && (cd "$D/logs" && gzip requests-2026-11-01.jsonl &&
          $PY -c "import zstandard;d=open('requests-2026-11-20.jsonl','rb').read();open('requests-2026-11-20.jsonl.zst','wb').write(zstandard.ZstdCompressor().compress(d))" &&
          rm requests-2026-11-20.jsonl) ;;
    s2|s3) python3 $H/gen.py "$D/_p" 0 1 >/dev/null && mv "$D/_p/prices" "$D/" && rm -rf "$D/_p" &&
           (cd $H && python3 gen${s#s}.py "$D") ;;
    *) cp -r $H/scenarios/$s/prices $H/scenarios/$s/logs $H/scenarios/$s/plan.json $H/scenarios/$s/accounts*.toml "$D/" ;;
  esac
  echo "=== $s ($TAG)"
  $PY $H/oracle.py "$D" && $PY $H/run_pipeline.py "$CLONE" "$D" && python3 $H/compare.py "$D" | tee "$D/compare.txt"
done
python3 - "$OUT" <<'PY'
import json, sys, glob, collections
from decimal import Decimal as D
a = collections.Counter(); d = collections.Counter(); u = D(0); st = D(0)
for f in sorted(glob.glob(sys.argv[1] + "/*/summary.json")):
    j = json.load(open(f)); a.update(j["agree"]); u += D(j["usd_charges"]); st += D(j["usd_statements"])
    for k, v in j["diffs"].items(): d[f.split("/")[-2] + ": " + k] += v
print("TOTAL AGREE:", dict(a)); print("TOTAL USD exact charges agreed:", u, "| statement totals agreed:", st)
print("TOTAL DIFFS:"); [print("  ", k, v) for k, v in sorted(d.items())]
PY
