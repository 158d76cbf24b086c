#!/usr/bin/env python3
"""Scenario generator for the independent InferGate billing differential.
usage: gen.py OUTDIR SEED [N_PER_DAY]"""
import json, os, random, sys, shutil

OUT, SEED = sys.argv[1], int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 400
R = random.Random(SEED)
os.makedirs(OUT + "/logs", exist_ok=True); os.makedirs(OUT + "/prices", exist_ok=True)

PRICES = {
"2026-10-01": ("2026-10-01T00:00:00Z", [
  ("openai/gpt-5.5-pro", "30", "180", None), ("openai/gpt-5.5", "4", "24", "0.4"),
  ("openai/gpt-5.4-image-2", "8", "15", None), ("deepseek-v4-flash", "0.0983", "0.1966", "0.0197"),
  ("deepseek-v4-pro", "0.435", "0.87", None)]),
"2026-11-01": ("2026-11-01T00:00:00Z", [
  ("openai/gpt-5.5-pro", "30", "180", None), ("openai/gpt-5.5", "5", "30", None),
  ("openai/gpt-5.4-image-2", "8", "15", None), ("deepseek-v4-flash", "0.0983", "0.1966", None),
  ("deepseek-v4-pro", "0.435", "0.87", None)]),
"2026-11-20b": ("2026-11-20T12:00:00Z", [
  ("openai/gpt-5.5-pro", "30", "180", None), ("openai/gpt-5.5", "5", "30", "0.5"),
  ("openai/gpt-5.4-image-2", "8", "15", None), ("deepseek-v4-flash", "0.0983", "0.1966", None),
  ("deepseek-v4-pro", "0.3333", "0.6667", "0.0333"), ("openai/gpt-5.5-mini", "0.25", "2", "0.025")]),
}
from decimal import Decimal
for vid, (eff, models) in PRICES.items():
    with open(f"{OUT}/prices/{vid}.toml", "w") as f:
        f.write(f'version = "{vid}"\neffective_from = {eff}\ncurrency = "USD"\nmarkup = "1.5"\n')
        for m, ui, uo, uc in models:
            f.write(f'\n[[models]]\nmodel = "{m}"\ndisplay_name = "{m}"\n'
                    f'upstream_input_per_1m = "{ui}"\nupstream_output_per_1m = "{uo}"\n'
                    f'list_input_per_1m = "{Decimal(ui)*Decimal("1.5")}"\nlist_output_per_1m = "{Decimal(uo)*Decimal("1.5")}"\n')
            if uc:
                f.write(f'upstream_cached_input_per_1m = "{uc}"\nlist_cached_input_per_1m = "{Decimal(uc)*Decimal("1.5")}"\n')

ACCOUNTS = '''[groups.default]
multiplier = "1"
[groups.enterprise]
multiplier = "0.9"
[groups.partner]
multiplier = "1.1"
[groups.odd]
multiplier = "1.0333"

[[accounts]]
id = "acct_acme"
legal_name = "Acme"
address = ["1 Street", "Berlin"]
email = "a@acme.example"
group = "default"

[[accounts]]
id = "acct_globex"
legal_name = "Globex"
address = ["1 Plaza"]
email = "b@globex.example"
group = "enterprise"

[[accounts]]
id = "acct_initech"
legal_name = "Initech"
address = ["4120 Lane"]
email = "c@initech.example"
group = "default"
discount_pct = "12.5"

[[accounts]]
id = "acct_umbrella"
legal_name = "Umbrella"
address = ["22 Street"]
email = "d@umbrella.example"
group = "default"

[[accounts.overrides]]
model = "openai/gpt-5.5"
effective_from = 2026-11-15T00:00:00Z
input_per_1m = "6"
cached_input_per_1m = "0.75"
output_per_1m = "36"

[[accounts.overrides]]
model = "deepseek-v4-flash"
effective_from = 2026-10-15T06:00:00Z
effective_until = 2026-12-01T00:00:00Z
input_per_1m = "0.1"
output_per_1m = "0.2"

[[accounts]]
id = "acct_hooli"
legal_name = "Hooli"
address = ["1401 Blvd"]
email = "e@hooli.example"
group = "partner"
discount_pct = "5"

[[accounts]]
id = "acct_odd"
legal_name = "Odd Ltd"
address = ["7 Road"]
email = "f@odd.example"
group = "odd"
discount_pct = "33.33"
'''
open(OUT + "/accounts.toml", "w").write(ACCOUNTS)

ACCTS = ["acct_acme", "acct_globex", "acct_initech", "acct_umbrella", "acct_hooli", "acct_odd"]
MODELS = ["openai/gpt-5.5-pro", "openai/gpt-5.5", "openai/gpt-5.4-image-2", "deepseek-v4-flash", "deepseek-v4-pro"]
STATUS = [200]*30 + [201, 204, 206, 299, 100, 101, 301, 304, 400, 401, 403, 404, 429, 429, 499, 499, 499, 500, 502, 503, 504, 599]
ERR = {400: "invalid_request", 401: "invalid_api_key", 403: "access_denied", 429: "rate_limit_exceeded",
       499: "client_closed", 500: "internal_error", 503: "upstream_timeout", 502: "bad_gateway"}
seq = [0]
def nid(p):
    seq[0] += 1; return f"{p}_{SEED}_{seq[0]:06d}"

OFFS = ["Z", "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+14:00", "-12:00", "+01:00", "-03:30"]
import datetime as dt
def fmt_ts(t_utc, off=None, frac=None, sep="T"):
    off = off if off is not None else R.choice(OFFS)
    if off in ("Z", "z"): delta = dt.timedelta(0)
    else:
        sgn = -1 if off[0] == "-" else 1
        delta = sgn * dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:6]))
    loc = t_utc + delta
    nd = frac if frac is not None else R.choice([0, 0, 1, 2, 3, 3, 6, 7, 9])
    s = loc.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if nd:
        digits = f"{loc.microsecond:06d}" + "".join(R.choice("0123456789") for _ in range(3))
        s += "." + digits[:nd]
    return s + off

def usage_for(model, kind="ok"):
    p = R.choice([0, 1, 7, 150, 2538, 40000, 123457])
    c = R.choice([0, 1, 33, 1243, 9999, 250001]) if kind != "zero" else 0
    ds = model.startswith("deepseek")
    if ds:
        hit = R.randint(0, p); u = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
             "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": p - hit}
        if R.random() < 0.5 and c: u["completion_tokens_details"] = {"reasoning_tokens": R.randint(0, c)}
    else:
        u = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        if R.random() < 0.7: u["prompt_tokens_details"] = {"cached_tokens": R.randint(0, p)}
        if R.random() < 0.4 and c:
            u["completion_tokens_details"] = {"reasoning_tokens": R.randint(0, c)}
            if "image" in model: u["completion_tokens_details"]["image_tokens"] = R.randint(0, c - u["completion_tokens_details"]["reasoning_tokens"])
        if R.random() < 0.1: u["extra_field"] = {"x": 1}
    return u

def bad_usage(model):
    u = usage_for(model)
    k = R.choice(["float", "str", "bool", "exp", "neg", "cached_gt", "hitmiss", "total", "reasoning_gt", "huge", "huge2"])
    if k == "float": u["prompt_tokens"] = 12.5; u["total_tokens"] = 12.5 + u["completion_tokens"]
    elif k == "str": u["completion_tokens"] = str(u["completion_tokens"])
    elif k == "bool": u["prompt_tokens"] = True
    elif k == "exp": return "EXP"   # spelled 1e3 in raw text, handled by writer
    elif k == "neg": u["completion_tokens"] = -1; u["total_tokens"] = u["prompt_tokens"] - 1
    elif k == "cached_gt":
        u.pop("prompt_cache_hit_tokens", None); u.pop("prompt_cache_miss_tokens", None)
        u["prompt_tokens_details"] = {"cached_tokens": u["prompt_tokens"] + 5}
    elif k == "hitmiss": u["prompt_cache_hit_tokens"] = 3; u["prompt_cache_miss_tokens"] = u["prompt_tokens"] + 1
    elif k == "total": u["total_tokens"] = u["prompt_tokens"] + u["completion_tokens"] + 1
    elif k == "reasoning_gt": u["completion_tokens_details"] = {"reasoning_tokens": u["completion_tokens"] + 1}
    elif k == "huge": u["prompt_tokens"] = 10**12; u["total_tokens"] = 10**12 + u["completion_tokens"]
    elif k == "huge2": u["prompt_tokens"] = 2**64; u["total_tokens"] = 2**64 + u["completion_tokens"]
    return u

MSGS = [[{"role": "user", "content": "Hello from InferGate."}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Count to five, please."}],
        [{"role": "user", "content": "Summarise: the quick brown fox jumps over the lazy dog.", "name": "bob"}]]

def rec(t_utc, acct, req, attempt, model, status, usage="auto", fin="auto", ts=None, **kw):
    r = {"event_id": nid("evt"), "request_id": req, "attempt": attempt,
         "ts": ts or fmt_ts(t_utc), "account_id": acct, "api_key_id": "key_" + acct[5:],
         "model": model, "status": status}
    if R.random() < 0.8:
        r["duration_ms"] = R.randint(0, 60000); r["provider"] = model.split("/")[0] if "/" in model else "deepseek"
        r["group"] = "default"; r["stream"] = R.random() < 0.5; r["endpoint"] = "/v1/chat/completions"
    r["error_code"] = ERR.get(status) if status >= 300 else None
    if fin == "auto":
        fin = "stop" if 200 <= status < 300 and R.random() < 0.85 else (R.choice([None, "length"]) if status < 300 else None)
    r["finish_reason"] = fin
    if usage == "auto":
        usage = usage_for(model) if (status < 400 or status == 499 or R.random() < 0.4) else None
    r["usage"] = usage
    r.update(kw)
    return r

def day_records(day, n):
    base = dt.datetime.fromisoformat(day + "T00:00:00+00:00")
    out = []
    for _ in range(n):
        t = base + dt.timedelta(seconds=R.randint(0, 86399), microseconds=R.randint(0, 999999))
        acct = R.choice(ACCTS + ["acct_ghost"] if R.random() < 0.05 else ACCTS)
        model = R.choice(MODELS + ["openai/gpt-5.5-mini"] if R.random() < 0.1 else MODELS)
        req = nid("req")
        roll = R.random()
        if roll < 0.55:
            out.append(rec(t, acct, req, 1, model, R.choice(STATUS)))
        elif roll < 0.75:   # retries
            k = R.randint(2, 4); tt = t
            for a in range(1, k + 1):
                st = R.choice(STATUS) if a < k else R.choice([200, 200, 503, 429, 499, 500])
                out.append(rec(tt, acct, req, a, model, st)); tt += dt.timedelta(seconds=R.randint(1, 400))
        elif roll < 0.80:   # zero output
            out.append(rec(t, acct, req, 1, model, R.choice([200, 499, 200]), usage=usage_for(model, "zero"),
                           fin=R.choice([None, None, "stop"])))
        elif roll < 0.86:   # missing usage
            m = R.choice(MODELS[:3])
            kw = {}
            c = R.random()
            if c < 0.6: kw = {"messages": R.choice(MSGS), "output_text": R.choice(["Hi there!", "1 2 3 4 5", "", "The fox jumps."])}
            elif c < 0.75: kw = {"messages": R.choice(MSGS)}
            out.append(rec(t, acct, req, 1, m, R.choice([200, 200, 499]), usage=None,
                           fin=R.choice(["stop", None]), **kw))
        elif roll < 0.90:
            out.append(rec(t, acct, req, 1, model, R.choice([200, 500]), usage=bad_usage(model)))
        elif roll < 0.93:   # wrong types
            r = rec(t, acct, req, 1, model, 200)
            k = R.choice(["attempt_str", "attempt0", "attempt_float", "status_str", "stream_str", "no_key", "eid_num", "no_model", "usage_list"])
            if k == "attempt_str": r["attempt"] = "1"
            elif k == "attempt0": r["attempt"] = 0
            elif k == "attempt_float": r["attempt"] = 1.5
            elif k == "status_str": r["status"] = "200"
            elif k == "stream_str": r["stream"] = "yes"
            elif k == "no_key": del r["api_key_id"]
            elif k == "eid_num": r["event_id"] = 12345 + seq[0]
            elif k == "no_model": del r["model"]
            elif k == "usage_list": r["usage"] = [1, 2]
            out.append(r)
        elif roll < 0.96:   # timestamp edge
            k = R.choice(["nooff", "compact", "space", "lower_t", "bad_day"])
            ts = fmt_ts(t)
            if k == "nooff": ts = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
            elif k == "compact": ts = t.strftime("%Y-%m-%dT%H:%M:%S") + "+0530"
            elif k == "space": ts = fmt_ts(t, sep=" ")
            elif k == "lower_t": ts = fmt_ts(t, sep="t")
            elif k == "bad_day": ts = "2026-11-31T10:00:00Z"
            out.append(rec(t, acct, req, 1, model, 200, ts=ts))
        else:   # same request id across accounts
            a2 = R.choice([a for a in ACCTS if a != acct])
            out.append(rec(t, acct, req, 1, model, 200)); out.append(rec(t, a2, req, 1, model, 200))
    return out

def edge_records(day):
    """deterministic edge records around the day's boundaries"""
    b = dt.datetime.fromisoformat(day + "T00:00:00+00:00"); out = []
    m = "openai/gpt-5.5"
    # exact midnight, and offsets crossing it
    for ts in [day + "T00:00:00.000Z", day + "T00:00:00Z", (b - dt.timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S") + "-08:00",
               (b - dt.timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
               (b - dt.timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "999Z",
               (b + dt.timedelta(hours=5, minutes=29, seconds=59)).strftime("%Y-%m-%dT%H:%M:%S.999999") + "+05:30",
               (b + dt.timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S") + "+05:30",
               (b + dt.timedelta(hours=14)).strftime("%Y-%m-%dT%H:%M:%S") + "+14:00",
               (b - dt.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S.5") + "-12:00"]:
        for acct in ["acct_umbrella", "acct_odd", "acct_initech"]:
            out.append(rec(b, acct, nid("req"), 1, R.choice([m, "deepseek-v4-flash", "deepseek-v4-pro"]), 200,
                           usage=usage_for(m), fin="stop", ts=ts))
    # retries across midnight: failure before, success after; all failing; success before + later success
    for acct in ["acct_acme", "acct_hooli", "acct_odd"]:
        req = nid("req")
        out.append(rec(b, acct, req, 1, m, 503, ts=(b - dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.9") + "Z"))
        out.append(rec(b, acct, req, 2, m, 200, ts=(b + dt.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"
                       .replace("+01:00", "Z"), usage=usage_for(m), fin="stop"))
        req = nid("req")
        out.append(rec(b, acct, req, 1, m, 429, ts=(b - dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S") + "Z"))
        out.append(rec(b, acct, req, 2, m, 500, ts=(b + dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S") + "Z", usage=usage_for(m)))
        req = nid("req")
        out.append(rec(b, acct, req, 1, m, 200, ts=(b - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S") + "Z", usage=usage_for(m), fin="stop"))
        out.append(rec(b, acct, req, 2, m, 499, ts=(b + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S") + "Z", usage=usage_for(m), fin=None))
        # ties on attempt number: later ts, then larger event id
        req = nid("req")
        r1 = rec(b, acct, req, 3, m, 200, ts=day + "T10:00:00.1234567Z", usage=usage_for(m), fin="stop")
        r2 = rec(b, acct, req, 3, m, 200, ts=day + "T10:00:00.1234561Z", usage=usage_for(m), fin="stop")
        out += [r1, r2]
        req = nid("req")
        r1 = rec(b, acct, req, 2, m, 200, ts=day + "T11:00:00Z", usage=usage_for(m), fin="stop")
        r2 = rec(b, acct, req, 2, m, 200, ts=day + "T12:00:00+01:00", usage=usage_for(m), fin="stop")
        out += [r1, r2]
    # mid-month price version boundary 2026-11-20T12:00Z
    if day == "2026-11-20":
        for ts in ["2026-11-20T12:00:00Z", "2026-11-20T11:59:59.999999Z", "2026-11-20T13:59:59+02:00", "2026-11-20T14:00:00+02:00"]:
            for mm in ["openai/gpt-5.5", "openai/gpt-5.5-mini", "deepseek-v4-pro"]:
                for acct in ["acct_acme", "acct_odd", "acct_umbrella"]:
                    out.append(rec(b, acct, nid("req"), 1, mm, 200, usage=usage_for("deepseek" if "deepseek" in mm else mm), fin="stop", ts=ts))
    # huge but valid counts
    out.append(rec(b, "acct_globex", nid("req"), 1, "openai/gpt-5.5-pro", 200,
                   usage={"prompt_tokens": 2**31, "completion_tokens": 999999999999 - 2**31, "total_tokens": 999999999999}, fin="stop",
                   ts=day + "T13:00:00Z"))
    return out

def dumps_variant(r):
    """a respelling of the same content: reordered keys, spaces, unicode escapes"""
    items = list(r.items()); R.shuffle(items)
    s = json.dumps(dict(items), separators=(" , ", " :  "), ensure_ascii=True)
    return s.replace('"acct_', '"\\u0061cct_', 1)

DAYS = {  # file day -> list of record days it holds (late records)
    "2026-10-31": [("2026-10-30", 1), ("2026-10-31", 1)],
    "2026-11-01": [("2026-11-01", 1)],
    "2026-11-15": [("2026-11-15", 1), ("2026-10-20", 0.05)],
    "2026-11-20": [("2026-11-20", 1)],
    "2026-11-30": [("2026-11-30", 1), ("2026-10-31", 0.05)],
    "2026-12-01": [("2026-12-01", 1), ("2026-11-28", 0.1)],
    "2026-12-02": [("2026-12-02", 0.5), ("2026-11-29", 0.1), ("2026-10-29", 0.05)],
}
stored = []  # all records written so far (for cross-file duplicates)
for fday, parts in DAYS.items():
    recs = []
    for d, share in parts:
        recs += day_records(d, max(3, int(N * share)))
        if share == 1: recs += edge_records(d)
    R.shuffle(recs)
    lines = []
    for r in recs:
        if r.get("usage") == "EXP":
            r["usage"] = None; s = json.dumps(r)
            s = s.replace('"usage": null', '"usage": {"prompt_tokens": 1e3, "completion_tokens": 5, "total_tokens": 1005}')
            lines.append(s); continue
        lines.append(json.dumps(r)); stored.append(r)
        x = R.random()
        if x < 0.02: lines.append(json.dumps(r))                  # identical duplicate, same file
        elif x < 0.03: lines.append(dumps_variant(r))              # respelled duplicate
        elif x < 0.045:                                              # conflicting duplicate
            r2 = dict(r); r2["status"] = 500 if r["status"] != 500 else 200; lines.append(json.dumps(r2))
        elif x < 0.05:                                               # fractional-number respelling
            r2 = dict(r); r2["upstream_cost_usd"] = "0.5"; lines.append(json.dumps(r2))
    # hostile lines
    lines.append('{"event_id": "evt_rep_%s", "event_id": "evt_rep_%s", "request_id": "x"}' % (fday, fday))
    u = '{"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "prompt_tokens": 5}'
    lines.append(json.dumps(rec(dt.datetime(2026, 11, 2), "acct_acme", nid("req"), 1, "openai/gpt-5.5", 200, usage=None, fin="stop",
                                ts=fday + "T09:00:00Z")).replace('"usage": null', '"usage": ' + u))
    lines.append("{not json")
    lines.append("[1, 2, 3]")
    lines.append("")
    # cross-file duplicates from earlier days: identical and conflicting
    if len(stored) > 50:
        for r in R.sample(stored[:-len(recs)] or stored, 5):
            lines.append(json.dumps(r))
        for r in R.sample(stored[:-len(recs)] or stored, 3):
            r2 = dict(r); r2["attempt"] = r["attempt"] + 10 if isinstance(r["attempt"], int) else 2; lines.append(json.dumps(r2))
    with open(f"{OUT}/logs/requests-{fday}.jsonl", "w") as f:
        f.write("\n".join(lines) + "\n")
    # a second file of the same day (name order matters for R1)
    if fday in ("2026-11-15", "2026-12-01"):
        extra = [json.dumps(r) for r in R.sample(recs, 4)]
        r0 = R.choice(recs); r2 = dict(r0); r2["usage"] = usage_for(r0["model"] if isinstance(r0.get("model"), str) else "x")
        extra.append(json.dumps(r2))
        extra += [json.dumps(r) for r in day_records(fday, 20)]
        with open(f"{OUT}/logs/requests-{fday}-b.jsonl", "w") as f:
            f.write("\n".join(extra) + "\n")

plan = [
    {"op": "nightly", "date": "2026-10-31"},
    {"op": "nightly", "date": "2026-11-01"},
    {"op": "finalize", "period": "2026-10", "issue_date": "2026-11-01"},
    {"op": "nightly", "date": "2026-11-15"},
    {"op": "nightly", "date": "2026-11-20"},
    {"op": "nightly", "date": "2026-11-30"},
    {"op": "nightly", "date": "2026-12-01"},
    {"op": "finalize", "period": "2026-11", "issue_date": "2026-12-01"},
    {"op": "nightly", "date": "2026-12-02"},
]
json.dump(plan, open(OUT + "/plan.json", "w"), indent=1)
