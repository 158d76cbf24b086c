#!/usr/bin/env python3
"""Hand-made R10 / re-ingest / rounding scenario. usage: gen2.py OUTDIR (prices/ copied from gen.py output)"""
import json, sys, os
OUT = sys.argv[1]; os.makedirs(OUT + "/logs", exist_ok=True)
base_acc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "s1/accounts.toml")).read()
half = '\n[[accounts]]\nid = "acct_half"\nlegal_name = "Half"\naddress = ["1 Road"]\nemail = "h@h.example"\ngroup = "default"\n'
late = '\n[[accounts]]\nid = "acct_late"\nlegal_name = "Late"\naddress = ["2 Road"]\nemail = "l@l.example"\ngroup = "enterprise"\n'
late2 = late.replace("acct_late", "acct_late2")
open(OUT + "/accounts.toml", "w").write(base_acc + half)
open(OUT + "/accounts2.toml", "w").write(base_acc + half.replace('group = "default"', 'group = "default"\ndiscount_pct = "50"') + late + late2)
n = [0]
def r(acct, req, att, ts, model, status=200, p=0, c=0, fin="stop", eid=None, **kw):
    n[0] += 1
    d = {"event_id": eid or f"e2_{n[0]:04d}", "request_id": req, "attempt": att, "ts": ts, "account_id": acct,
         "api_key_id": "k", "model": model, "status": status, "finish_reason": fin,
         "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}
    d.update(kw); return json.dumps(d)
P, G, F = "openai/gpt-5.5-pro", "openai/gpt-5.5", "deepseek-v4-flash"
oct_ = [
 r("acct_half", "A", 1, "2026-10-15T10:00:00Z", P, p=1000),
 r("acct_half", "C", 1, "2026-10-15T11:00:00Z", P, c=1500),
 r("acct_half", "B", 1, "2026-10-31T23:59:59Z", G, p=100000, c=1000),
 r("acct_half", "R", 1, "2026-10-31T20:00:00-05:00", G, p=10, c=10),
 r("acct_late", "L", 1, "2026-10-20T00:00:00Z", G, p=5000, c=500),
 r("acct_late2", "L2", 1, "2026-10-20T00:00:00Z", G, p=7000, c=700),
 r("acct_half", "X", 1, "2026-10-20T10:00:00", G, p=33, c=3, eid="evt_fix1"),
 r("acct_half", "Y", "1", "2026-10-20T10:00:00Z", G, p=44, c=4, eid="evt_fix2"),
 r("acct_half", "Y", 1, "2026-10-20T10:00:00Z", G, p=44, c=4, eid="evt_fix2"),
 r("acct_acme", "U1", 1, "2026-10-21T10:00:00Z", G, usage={}),
 r("acct_acme", "U2", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None}),
 r("acct_acme", "U3", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": None}}),
 r("acct_acme", "U4", 1, "2026-10-21T10:00:00Z", F, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_cache_hit_tokens": 4, "prompt_cache_miss_tokens": 6, "prompt_tokens_details": {"cached_tokens": 4}}),
 r("acct_acme", "U5", 1, "2026-10-21T10:00:00Z", F, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_cache_hit_tokens": 4}),
 r("acct_acme", "U6", 1, "2026-10-21T10:00:00Z", F, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_cache_miss_tokens": 4}),
 r("acct_acme", "U7", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "completion_tokens_details": {"reasoning_tokens": 3, "image_tokens": 3}}),
 r("acct_acme", "U8", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}, fin="length"),
 r("acct_acme", "U9", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}, fin=None, status=499),
 r("acct_acme", "U10", 1, "2026-10-21T10:00:00Z", G, usage={"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}, fin=None, status=503),
 r("acct_acme", "U11", 1, "2026-10-21T10:00:00Z", G, status=200, fin="stop", usage=None, output_text="Hello there"),
 r("acct_acme", "U12", 1, "2026-10-21T10:00:00Z", G, status=200, fin=None, usage=None, output_text="Hello there"),
 r("acct_acme", "U13", 1, "2026-10-21T10:00:00.000000000000000001Z", G, p=1, c=1),
 r("acct_acme", "U14", 1, "2026-10-21T10:00:00Z", G, p=1, c=1, upstream_cost_usd="1e-3"),
 r("acct_acme", "U15", 1, "2026-10-21T10:00:00Z", G, p=1, c=1, duration_ms=-5),
 r("acct_acme", "U16", 1, "2026-10-21T10:00:00Z", G, p=1, c=1, attempt=2**63),
]
nov = [
 r("acct_half", "A", 2, "2026-10-15T10:00:05Z", P, c=1),
 r("acct_half", "B", 2, "2026-11-01T00:00:01Z", G, p=100000, c=1000),
 r("acct_half", "X", 1, "2026-10-20T10:00:00Z", G, p=33, c=3, eid="evt_fix1"),
 r("acct_half", "N", 1, "2026-11-10T10:00:00Z", G, p=1234, c=567),
 r("acct_late2", "N2", 1, "2026-11-10T10:00:00Z", G, p=1234, c=567),
 r("acct_half", "C", 2, "2026-10-15T11:00:01Z", P, status=500, c=99999),
]
dec = [
 r("acct_half", "D1", 1, "2026-10-25T10:00:00Z", P, p=1000),
 r("acct_half", "D2", 1, "2026-11-25T10:00:00Z", P, p=1000),
 r("acct_half", "D3", 1, "2026-12-02T10:00:00Z", P, p=1000),
 r("acct_late", "D4", 1, "2026-11-30T23:59:59.9999999Z", G, p=10, c=10),
 r("acct_half", "E1", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1a", messages=[{"role": "user", "content": "caf\u00e9 \ud83d\ude00"}], extra=1.5),
 r("acct_half", "E1", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1a", messages=[{"role": "user", "content": "caf\u00e9 \ud83d\ude00"}], extra=1.5).replace("1.5", "15e-1").replace("evt_r1a", "evt\\u005fr1a"),
 r("acct_half", "E2", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1b", extra=1),
 r("acct_half", "E2", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1b", extra=1.0),
 r("acct_half", "E3", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1c", extra=None),
 r("acct_half", "E3", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1c"),
 r("acct_half", "E4", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1d", messages=[{"role": "user", "content": "caf\u00e9"}]),
 json.dumps(json.loads(r("acct_half", "E4", 1, "2026-12-01T10:00:00Z", G, p=10, c=10, eid="evt_r1d", messages=[{"role": "user", "content": "caf\u00e9"}])), ensure_ascii=False),
]
for name, ls in [("2026-10-31", oct_), ("2026-11-10", nov), ("2026-12-02", dec)]:
    open(f"{OUT}/logs/requests-{name}.jsonl", "w").write("\n".join(ls) + "\n")
json.dump([
    {"op": "nightly", "date": "2026-10-31"},
    {"op": "finalize", "period": "2026-10", "issue_date": "2026-11-01"},
    {"op": "accounts", "file": "accounts2.toml"},
    {"op": "nightly", "date": "2026-11-10"},
    {"op": "finalize", "period": "2026-11", "issue_date": "2026-12-01"},
    {"op": "nightly", "date": "2026-12-02"},
    {"op": "draft", "period": "2026-12"},
], open(OUT + "/plan.json", "w"), indent=1)
