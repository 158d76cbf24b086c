#!/usr/bin/env python3
"""Compare expected.json (oracle) with actual.json (pipeline). usage: compare.py SCENARIO"""
import json, sys, collections
from decimal import Decimal as D
S = sys.argv[1]
E = json.load(open(S + "/expected.json")); A = json.load(open(S + "/actual.json"))
diffs = collections.defaultdict(list); agree = collections.Counter(); usd_agreed = [D(0)]; usd_charges = [D(0)]
def n(x): return None if x is None else D(x).normalize()
# attempts
act = {r["event_id"]: r for r in A["attempts"]}
for eid, e in E["attempts"].items():
    a = act.pop(eid, None)
    if a is None: diffs["attempt_missing_in_pipeline"].append(eid); continue
    if (e["outcome"], e["reason"]) != (a["outcome"], a["reason"]):
        diffs[f"reason oracle={e['outcome']}/{e['reason']} pipeline={a['outcome']}/{a['reason']}"].append(eid); continue
    if e["period"] != a["period"]: diffs["period"].append((eid, e["period"], a["period"])); continue
    agree["attempt_reason"] += 1
    if e["outcome"] == "billed":
        if e["version"] != a["price_version"]: diffs["price_version"].append((eid, e["version"], a["price_version"])); continue
        if e["usage_source"] != a["usage_source"]: diffs["usage_source"].append((eid, e["usage_source"], a["usage_source"])); continue
        if not e.get("exact") or "tokens" not in e:
            if e.get("est_out") is not None and e["est_out"] != a["output_tokens"]: diffs["deepseek_recount_output"].append((eid, e["est_out"], a["output_tokens"]))
            else: agree["deepseek_recount_output_only"] += 1
            continue
        at = [a["input_uncached_tokens"], a["input_cached_tokens"], a["output_tokens"], a["reasoning_tokens"], a["image_tokens"]]
        if e["tokens"] != at: diffs["tokens" + ("(estimated)" if e["usage_source"] == "estimated" else "")].append((eid, e["tokens"], at)); continue
        if [n(x) for x in e["units"]] != [n(a["u0"]), n(a["u1"]), n(a["u2"])]: diffs["unit_price"].append((eid, e["units"], [a["u0"], a["u1"], a["u2"]])); continue
        if [n(x) for x in e["charges"]] != [n(a["c0"]), n(a["c1"]), n(a["c2"])] or n(e["total"]) != n(a["ct"]):
            diffs["charge"].append((eid, e["charges"], [a["c0"], a["c1"], a["c2"]])); continue
        agree["billed_charge_exact"] += 1; usd_charges[0] += D(e["total"])
for eid in act: diffs["attempt_only_in_pipeline"].append(eid)
# quarantine
eq = {(q[0], q[1]): q for q in E["quarantine"]}
for q in A["quarantine"]:
    k = (q["source_file"], q["source_line"]); e = eq.pop(k, None)
    if e is None: diffs["quarantine_only_in_pipeline"].append((k, q["reason"], q["message"])); continue
    if e[3] != q["reason"]: diffs[f"quarantine oracle={e[3]} pipeline={q['reason']}"].append((k, q["message"])); continue
    agree["quarantine_reason"] += 1
for k, e in eq.items(): diffs["quarantine_only_in_oracle"].append((k, e[3]))
# files
af = {f["file_name"]: f for f in A["files"]}
for name, (rd, acc, dup, qu) in E["files"].items():
    f = af.get(name)
    if not f or [f["lines_read"], f["accepted"], f["duplicates"], f["quarantined"]] != [rd, acc, dup, qu]:
        diffs["file_counts"].append((name, [rd, acc, dup, qu], f)); continue
    if f["lines_read"] != f["accepted"] + f["duplicates"] + f["quarantined"]: diffs["file_invariant"].append(name); continue
    agree["file_counts"] += 1
# statements (issued)
ast = {f'{s["account_id"]}|{s["period"]}': s for s in A["statements"]}
ail = collections.defaultdict(list)
for l in A["issued_lines"]:
    ail[f'{l["account_id"]}|{l["period"]}'].append(l)
for k, e in E["statements"].items():
    s = ast.pop(k, None)
    if s is None: diffs["statement_missing_in_pipeline"].append((k, e["total_usd"])); continue
    cols = ["billed_requests", "input_uncached_tokens", "input_cached_tokens", "output_tokens", "price_versions"]
    bad = [c for c in cols if e[c] != s[c]] + [c for c in ["usage_usd", "adjustments_usd", "total_usd"] if n(e[c]) != n(s[c])]
    if bad: diffs["statement_totals"].append((k, {c: (e[c], s[c]) for c in bad})); 
    else: agree["statement_totals"] += 1; usd_agreed[0] += abs(D(e["total_usd"]))
    ul = sorted([l["model"], l["token_class"], str(n(l["u"])), l["quantity_tokens"], str(n(l["amount"]))] for l in ail[k] if l["kind"] == "usage")
    el = sorted([m, c, str(n(u)), t, str(n(a))] for m, c, u, t, a in e["lines"])
    if ul != el: diffs["statement_usage_lines"].append((k, [x for x in el if x not in ul], [x for x in ul if x not in el]))
    else: agree["statement_usage_lines"] += len(el)
    ua = sorted([l["original_period"], l["model"], l["token_class"], str(n(l["u"])), l["quantity_tokens"], str(n(l["amount"]))] for l in ail[k] if l["kind"] != "usage")
    ea = sorted([p, m, c, str(n(u)), t, str(n(a))] for p, m, c, u, t, a in e["adjustments"])
    if ua != ea: diffs["statement_adjustment_lines"].append((k, [x for x in ea if x not in ua], [x for x in ua if x not in ea]))
    else: agree["statement_adjustment_lines"] += len(ea)
for k in ast: diffs["statement_only_in_pipeline"].append(k)
# finance CSV vs issued
for fn, rows in A["finance"].items():
    for r in rows:
        k = f'{r["account_id"]}|{r["period"]}'; e = E["statements"].get(k) if r.get("statement_number") else E.get("drafts", {}).get(k)
        if not e: diffs["finance_row_unexpected"].append(k); continue
        cols = ["billed_requests", "input_uncached_tokens", "input_cached_tokens", "output_tokens", "usage_usd", "adjustments_usd", "total_usd"]
        bad = [c for c in cols if n(str(e[c])) != n(r[c])] + ([] if e["price_versions"] == r["price_versions"] else ["price_versions"])
        if bad: diffs["finance_csv"].append((k, {c: (e[c], r[c]) for c in bad}))
        else: agree["finance_rows" if r.get("statement_number") else "finance_rows_draft"] += 1
seen = {f'{r["account_id"]}|{r["period"]}' for rows in A["finance"].values() for r in rows}
for k in list(E["statements"]) + list(E.get("drafts", {})):
    if k not in seen: diffs["finance_row_missing"].append(k)
# current lines (all periods, including open ones)
al = collections.defaultdict(list)
for l in A["lines_now"]: al[f'{l["account_id"]}|{l["period"]}'].append([l["model"], l["token_class"], str(n(l["u"])), l["quantity_tokens"], str(n(l["ex"])), str(n(l["amount"]))])
for k, ls in E["lines_now"].items():
    el = sorted([m, c, str(n(u)), t, str(n(ex)), str(n(am))] for m, c, u, t, ex, am in ls)
    pl = sorted(al.pop(k, []))
    if k in E.get("inexact", []): agree["current_lines_skipped(deepseek recount)"] += 1; continue
    if el != pl: diffs["current_lines"].append((k, [x for x in el if x not in pl], [x for x in pl if x not in el]))
    else: agree["current_lines"] += len(el)
for k in al:
    if k not in E.get("inexact", []): diffs["current_lines_only_in_pipeline"].append(k)
# statement CSV files (issued): lines CSV = oracle lines + adjustments, summing to the total; detail CSV = oracle billed requests
num = {s["statement_number"]: f'{s["account_id"]}|{s["period"]}' for s in A["statements"]}
byst = collections.defaultdict(list)
for r in A.get("lines_csv", []): byst[r["statement_number"]].append(r)
for sn, rows in byst.items():
    k = num.get(sn); e = E["statements"].get(k)
    if not e: continue
    got = sorted([r["original_period"] if r["kind"] != "usage" else "", r["model"], r["token_class"], str(n(r["unit_price_per_1m"])), int(r["quantity_tokens"]), str(n(r["amount_usd"]))] for r in rows if r["kind"] in ("usage", "adjustment"))
    exp = sorted([["", m, c, str(n(u)), t, str(n(a))] for m, c, u, t, a in e["lines"]] + [[p, m, c, str(n(u)), t, str(n(a))] for p, m, c, u, t, a in e["adjustments"]])
    if got != exp: diffs["lines_csv"].append((sn, k, [x for x in exp if x not in got], [x for x in got if x not in exp], sorted({r["kind"] for r in rows})))
    else: agree["lines_csv_rows"] += len(got)
    tot = sum(D(r["amount_usd"]) for r in rows if r["kind"] in ("usage", "adjustment"))
    if tot != D(e["total_usd"]): diffs["lines_csv_sum_vs_total"].append((sn, str(tot), e["total_usd"]))
det = collections.defaultdict(dict)
# layout 8 on: the rows behind prior-period adjustments (kind adjustment) are not the period's own requests
for r in A.get("detail_csv", []):
    if r.get("kind", "usage") == "usage": det[r["_file"].replace("-detail.csv", "")][r["event_id"]] = r
for sn, rows in det.items():
    k = num.get(sn)
    if not k: continue
    acct, per = k.split("|")
    exp = E["statements"][k].get("detail", {})
    for eid, r in rows.items():
        if eid not in exp: diffs["detail_csv_not_billed_in_oracle"].append((sn, eid)); continue
        if exp[eid] is not None and n(exp[eid]) != n(r["charge_usd"]): diffs["detail_csv_charge"].append((sn, eid, exp[eid], r["charge_usd"]))
        else: agree["detail_csv_rows"] += 1
    if exp and set(exp) - set(rows): diffs["detail_csv_missing"].append((sn, sorted(set(exp) - set(rows))[:5]))
# daily_usage view (the analysts' documented query)
ed = {}
for eid, x in E["attempts"].items():
    if x["outcome"] != "billed" or "tokens" not in x: continue
    k = (x["_acct"], x["_day"], x["_model"]); v = ed.setdefault(k, [0, 0, 0, 0, D(0)])
    v[0] += 1; v[1] += x["tokens"][0]; v[2] += x["tokens"][1]; v[3] += x["tokens"][2]; v[4] += D(x["total"])
skip = {(x["_acct"], x["_day"], x["_model"]) for x in E["attempts"].values() if x["outcome"] == "billed" and "tokens" not in x}
for r in A.get("daily", []):
    k = (r["account_id"], r["d"], r["model"])
    if k in skip: ed.pop(k, None); continue
    e = ed.pop(k, None)
    got = [r["billed_requests"], r["t0"], r["t1"], r["t2"], n(r["usd"])]
    if e is None or e[:4] != got[:4] or n(e[4]) != got[4]: diffs["daily_usage"].append((k, e, got))
    else: agree["daily_usage_rows"] += 1
for k in ed:
    if k not in skip: diffs["daily_usage_missing"].append(k)
print("AGREE:", dict(agree))
print("USD: exact charges agreed", usd_charges[0], "| |statement totals| agreed", usd_agreed[0])
json.dump(dict(agree=dict(agree), diffs={k: len(v) for k, v in diffs.items()}, usd_charges=str(usd_charges[0]), usd_statements=str(usd_agreed[0])), open(S + "/summary.json", "w"))
for k, v in sorted(diffs.items()):
    print(f"DIFF {k}: {len(v)}")
    for x in v[:4]: print("   ", str(x)[:400])
