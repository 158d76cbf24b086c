"""Secrets and privacy (SPEC section 6): a raw API key never reaches the database, a CSV, a log
line or an error message; prompt and output text are never stored.

Keys and marker text are planted in every text field, in wrong-typed values, in malformed
lines, and in a file name; then nightly, export (CSV and Parquet), the quarantine listing,
the run ledger, finalized statements (their PDF text too), margin, spend-limits, replay and
the sql command run through the CLI, and the database file and analyst snapshot (after
CHECKPOINT, with its WAL and temp directory), every output file and all captured stdout and
stderr are searched byte for byte.
A canary value that *is* stored proves the byte search can see stored text, and every text
column is searched in SQL as well (in case a page were compressed).
"""

from __future__ import annotations

import functools
import gzip
import json
import secrets
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from core.db import connect
from tests.conftest import record, usage
from tests.faults.harness import ACCOUNTS, CLI, ROOT
from tests.forked_cli import run_cli_bytes

DAY = "2026-11-20"
ACCOUNT = "acct_acme"  # in data/accounts.toml, so the planted records are billed and exported


class Plants:
    """Unique keys and markers, remembered so that the search knows what to look for."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.markers: list[str] = []
        self.canary = f"CANARY{secrets.token_hex(8)}"

    def key(self, where: str) -> str:
        value = f"sk-{where.replace('_', '')}-{secrets.token_hex(10)}"
        self.keys.append(value)
        return value

    def bearer(self, where: str) -> str:
        token = f"{where.replace('_', '')}{secrets.token_hex(10)}"
        self.keys.append(token)
        return f"Bearer {token}"

    def tab_bearer(self, where: str) -> str:
        """A bearer token after a tab: JSON writes it ``Bearer\\t...``, which quarantine masks."""
        token = f"{where.replace('_', '')}{secrets.token_hex(10)}"
        self.keys.append(token)
        return f"Bearer\t{token}"

    def aws_secret(self, where: str) -> str:
        """An AWS secret in quotes: JSON writes ``key=\\"...\\"``, which quarantine masks."""
        body = (where.replace("_", "") + secrets.token_hex(20))[:40]
        self.keys.append(body)
        return f'aws_secret_access_key="{body}"'

    def text(self, where: str) -> str:
        marker = f"MARKER{where.replace('_', '')}{secrets.token_hex(6)}"
        self.markers.append(marker)
        return f"{marker} and {self.key(where + 'text')}"

    def needles(self) -> list[bytes]:
        """Each key whole and its first 12 characters after 'sk-' (a cut key), each marker."""
        found = []
        for key in self.keys:
            found += [key.encode(), key.removeprefix("sk-")[:12].encode()]
        return found + [m.encode() for m in self.markers]


def texts(p: Plants, where: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": p.text(where + "msg")}], "output_text": p.text(where + "out")}


def planted_lines(p: Plants) -> list[bytes]:
    base: dict[str, Any] = {"account_id": ACCOUNT, "ts": f"{DAY}T10:00:00Z"}
    lines: list[dict[str, Any] | bytes] = [
        # valid and billed: keys in every free-text field, in usage, in an unknown field
        record(
            **base,
            event_id="billed",
            request_id="r-billed",
            api_key_id=p.key("apikeyid"),
            group=p.key("group"),
            endpoint=f"/v1/chat/completions?k={p.key('endpoint')}",
            provider=p.bearer("provider"),
            error_code=f"{p.canary} {p.key('errorcode')}",
            finish_reason=f"stop {p.key('finish')}",
            usage=usage(1000, 100) | {"note": p.key("usagenote")},
            extra={"deep": [p.key("extra")]},
            **texts(p, "billed"),
        ),
        # valid, usage-less: recounted from the texts (R5), which must then be dropped
        record(**base, event_id="recount", request_id="r-recount", usage=None, **texts(p, "recount")),
        # lone surrogate in the text: accepted, counted
        record(
            **base,
            event_id="surrogate",
            request_id="r-sur",
            usage=None,
            messages=[{"role": "user", "content": p.text("sur") + " \ud800"}],
            output_text=p.text("surout"),
        ),
    ]
    # a valid record with keys spelled with JSON escapes (stored decoded, so masked)
    k3, k4 = p.key("escvalid"), p.key("escextra")
    escaped = json.dumps(record(**base, event_id="escaped", request_id="r-esc", error_code="E", extra="X"))
    escaped = escaped.replace('"E"', f'"{k3[:2]}\\u002d{k3[3:]}"').replace('"X"', f'"\\u0073{k4[1:]}"')
    lines.append(escaped.encode())
    # keys in ids: quarantined
    for field in ("event_id", "request_id", "account_id", "model"):
        lines.append(record(**{**base, field: p.key(field)}, **texts(p, "id" + field)))
    # keys inside wrong-typed values and in texts of quarantined records
    for field, value in (
        ("attempt", p.key("attempt")),
        ("ts", f"{DAY}T10:00:00 {p.key('ts')}"),
        ("status", p.bearer("status")),
        ("stream", p.key("stream")),
        ("duration_ms", p.key("duration")),
        ("usage", p.key("usagestr")),
        ("upstream_cost_usd", p.key("cost")),
        ("group", [p.key("grouplist")]),
        ("messages", p.text("msgstring")),
        ("output_text", {"t": p.text("outobj")}),
    ):
        lines.append(
            record(**{**base, "event_id": f"bad-{field}", field: value}, **texts(p, "bad" + field))
            if field not in ("messages", "output_text")
            else record(**{**base, "event_id": f"bad-{field}", field: value})
        )
    lines.append(record(**base, event_id="badusage", usage={"prompt_tokens": p.key("tokens"), "completion_tokens": 1}))
    # separators JSON escapes (a tab, quotes) in a quarantined record and in its message (found by an audit)
    lines.append(
        record(**{**base, "event_id": "badtab", "status": p.tab_bearer("tabstatus")}, group=p.aws_secret("aws"))
    )
    # the same event twice with different content: duplicate_conflict
    first = record(**base, event_id="dup", request_id="r-dup", **texts(p, "dup1"))
    lines += [first, {**first, "error_code": p.key("dupconflict"), **texts(p, "dup2")}]
    # malformed lines (marker text only ever inside messages/output_text: that is what "prompt
    # and output text" means; keys anywhere)
    k1, k2 = p.key("trunc"), p.key("escaped")
    lines += [
        f'{{"event_id": "t", "api_key_id": "{k1}", "messages": [{{"content": "{p.text("trunc")}"'.encode(),
        f'{{"oops": "{k2[:3]}\\u00{ord(k2[3]):02x}{k2[4:]}", "x": '.encode(),  # a key spelled with an escape
        b'{"event_id": "m", "mess\\u0061ges": ["' + p.text("escapedkey").encode() + b'"], ',
        f'{{"key": "{p.key("utf8")}", "messages": [{{"content": "{p.text("utf8")}'.encode() + b'\xff"}]}',
        b'{"key": "' + p.key("delim").encode() + b'", "output_text": "' + p.text("delim").encode() + b'"}\x1e\x1f',
        f'[{{"api_key": "{p.key("array")}", "messages": ["{p.text("array")}"]}}]'.encode(),
        p.key("bare").encode(),
    ]
    return [item if isinstance(item, bytes) else json.dumps(item).encode() for item in lines]


def run(db: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """A CLI process (forked from the warm server, tests/forked_cli.py): its own stdout and stderr."""
    return run_cli_bytes(["--db", str(db), "--accounts", str(ACCOUNTS), *args], timeout=300)


def text_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return [
        (t, c)
        for t, c in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal "
            "AND (data_type IN ('VARCHAR', 'JSON') OR data_type LIKE '%[]') "
            "AND table_name IN (SELECT table_name FROM duckdb_tables())"
        ).fetchall()
    ]


def assert_no_stored_text_holds(con: duckdb.DuckDBPyConnection, needles: list[str]) -> None:
    """No text cell of any table contains any needle: one read per table, searched in Python (a
    query per column and needle took half a minute)."""
    by_table: dict[str, list[str]] = {}
    for table, column in text_columns(con):
        by_table.setdefault(table, []).append(column)
    for table, columns in by_table.items():
        cells = ", ".join(f'CAST("{column}" AS VARCHAR)' for column in columns)
        for row in con.execute(f'SELECT {cells} FROM "{table}"').fetchall():
            for column, value in zip(columns, row, strict=True):
                found = [needle for needle in needles if value is not None and needle in value]
                assert not found, (table, column, found)


def parquet_text(path: Path) -> bytes:
    """Every value of a Parquet file, as text."""
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet('{path}')").fetchall()
    return "\n".join("\t".join(str(v) for v in row) for row in rows).encode()


def files_under(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def assert_nothing_leaks(p: Plants, blobs: dict[str, bytes]) -> None:
    leaks = [(name, needle.decode()) for name, blob in blobs.items() for needle in p.needles() if needle in blob]
    assert not leaks, leaks[:10]


def test_planted_keys_and_texts_reach_no_table_file_output_or_message(tmp_path: Path) -> None:
    plant_and_search(tmp_path)


def plant_and_search(tmp_path: Path) -> Plants:
    """The whole check; returns what was planted (``make soak`` repeats it and counts)."""
    p = Plants()
    home, logs, out = tmp_path / "db", tmp_path / "logs", tmp_path / "out"
    logs.mkdir(parents=True)
    data = b"".join(line + b"\n" for line in planted_lines(p))
    (logs / f"requests-{DAY}.jsonl").write_bytes(data)
    (logs / f"requests-{DAY}-b.jsonl.gz").write_bytes(gzip.compress(data.replace(b'"dup"', b'"dup-b"'), mtime=0))
    db = home / "billing.duckdb"
    results = [
        run(db, "nightly", "--date", DAY, "--logs", str(logs), "--max-quarantine-rate", "1"),
        run(db, "export", "--period", "2026-11", "--out", str(out)),
        run(db, "quarantine", "--limit", "1000"),
        run(db, "runs", "list"),
        run(db, "runs", "show", "1"),
        run(db, "statements", "--period", "2026-11", "--finalize", "--issue-date", "2026-12-01", "--out", str(out)),
        run(db, "export", "--period", "2026-11", "--format", "parquet", "--out", str(out / "parquet")),
        run(db, "margin", "--period", "2026-11", "--out", str(out)),
        run(db, "spend-limits", "--period", "2026-11", "--min-rejections", "1", "--out", str(out)),
        run(db, "replay", "--period", "2026-11", "--out", str(out)),
        run(db, "sql", "SELECT * FROM rated_attempts"),
        run(db, "ingest", str(logs / f"requests-{p.key('filename')}.jsonl")),  # an error naming a key
    ]
    assert [r.returncode for r in results] == [0] * 11 + [1], [r.stderr for r in results]
    assert b"[REDACTED]" in results[-1].stderr

    con = connect(db)  # read-write: CHECKPOINT folds the WAL into the file
    con.execute("CHECKPOINT")
    con.close()
    # connect(): the attempts view reads the lake files too (core/attempt_store.py)
    with connect(db, read_only=True) as ro:
        # billed, escaped, recount, surrogate, and one of dup/dup-b (same request: one is superseded)
        assert ro.execute("SELECT count(*) FROM rated_attempts WHERE outcome = 'billed'").fetchone() == (5,)
        assert ro.execute("SELECT count(*) FROM quarantine").fetchone()[0] >= 30  # type: ignore[index]
        assert_no_stored_text_holds(ro, [needle.decode() for needle in p.needles()])
    blobs = files_under(home, out)
    # Parquet pages are compressed: search the lake's rows as text too (its raw bytes, above,
    # hold the footers' statistics uncompressed)
    blobs |= {f"{path} (rows)": parquet_text(path) for path in sorted(home.rglob("*.parquet"))}
    pdfs = sorted(out.rglob("*.pdf"))
    assert pdfs, "the statements job wrote no PDF: the PDF search would prove nothing"
    # PDF streams are compressed: search the text a reader extracts, not the file bytes
    blobs |= {f"{pdf} (text)": "\n".join(page.extract_text() for page in PdfReader(pdf).pages).encode() for pdf in pdfs}
    blobs |= {f"stdout {i}": r.stdout for i, r in enumerate(results)} | {
        f"stderr {i}": r.stderr for i, r in enumerate(results)
    }
    stores = (".duckdb", ".parquet (rows)")
    assert any(p.canary.encode() in blob for name, blob in blobs.items() if name.endswith(stores)), (
        "the byte search cannot see stored text (compressed pages?): it would prove nothing"
    )
    assert_nothing_leaks(p, blobs)
    return p


def test_a_killed_spark_runs_exchange_is_removed_by_the_next_run_on_any_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed ``--engine spark`` run leaves its exchange directory (parsed rows with text
    before masking, R5 candidates' prompts): the next run on that database removes it even on
    DuckDB, and leaves other databases' exchanges alone (tests/spark/test_spark_kill.py kills
    a real Spark run)."""
    from pipeline.jobs import Settings, run_nightly
    from pipeline.spark.exchange import _prefix

    work = tmp_path / "exchange"
    work.mkdir()
    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", str(work))
    db = tmp_path / "db" / "billing.duckdb"
    mine = work / (_prefix(db) + "killed")
    (mine / "parsed").mkdir(parents=True)
    (mine / "parsed" / "part-0.parquet").write_bytes(b"sk-proj-LEFTBEHIND0123456789abcdefgh prompt text")
    other = work / (_prefix(tmp_path / "other.duckdb") + "running")
    other.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"requests-{DAY}.jsonl").write_text(json.dumps(record(account_id=ACCOUNT)) + "\n")
    run_nightly(Settings(db_path=db, accounts_file=ACCOUNTS), date.fromisoformat(DAY), logs)
    assert not mine.exists() and other.is_dir()


def test_spill_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """Under a memory limit DuckDB spills TEMP tables (the raw staged lines) to <db>.tmp/; a
    SIGKILL leaves those files behind and DuckDB itself never removes them."""
    p = Plants()
    logs = tmp_path / "logs"
    logs.mkdir()
    filler = "x" * 1200
    line = json.dumps(record(account_id=ACCOUNT, messages=[{"role": "user", "content": p.text("spill") + filler}]))
    (logs / f"requests-{DAY}.jsonl").write_text(
        "".join(line.replace('"evt-', f'"e{i}-').replace('"req-', f'"r{i}-') + "\n" for i in range(40_000))
    )
    db = tmp_path / "db" / "billing.duckdb"
    nightly = ["nightly", "--date", DAY, "--logs", str(logs), "--max-quarantine-rate", "1"]
    killed = subprocess.run(
        [CLI, "--db", str(db), "--accounts", str(ACCOUNTS), "--memory-limit", "32MB", *nightly],
        capture_output=True,
        cwd=ROOT,
        env={**__import__("os").environ, "INFERGATE_FAULT": "staged_file"},
    )
    assert killed.returncode == -9
    spill = files_under(db.parent / "billing.duckdb.tmp")
    if not any(name.endswith(".tmp") and blob for name, blob in spill.items()):
        pytest.skip("DuckDB did not spill under a 32MB limit here")
    assert any(p.markers[0].encode() in blob for blob in spill.values())  # raw text on disk
    assert run(db, *nightly).returncode == 0
    con = connect(db)
    con.execute("CHECKPOINT")
    con.close()
    assert_nothing_leaks(p, files_under(db.parent))


# --- the secret patterns (issue 20 item 15): Python and SQL agree on one table of examples ---

_A36 = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5"  # 36 characters of a token body
SECRET_EXAMPLES: list[tuple[str, str]] = [
    ("sk-proj-" + _A36, "[REDACTED]"),
    ("sk-" + _A36[:20] + "T3BlbkFJ" + _A36[:20], "[REDACTED]"),
    ("key sk-ant-api03-" + _A36 + " end", "key [REDACTED] end"),
    ("Bearer " + _A36, "[REDACTED]"),
    ("BEARER " + _A36, "[REDACTED]"),
    ("authorization: bearer\t" + _A36 + "==", "authorization: [REDACTED]"),
    ('{"k":"Bearer\\t' + _A36 + '"}', '{"k":"[REDACTED]"}'),  # as JSON writes a tab: quarantine masks JSON text
    ('{"k":"aws_secret_access_key=\\"' + (_A36 * 2)[:40] + '\\""}', '{"k":"[REDACTED]\\""}'),
    ("sk_live_" + _A36, "[REDACTED]"),
    ("rk_test_" + _A36[:24], "[REDACTED]"),
    ("AKIAIOSFODNN7EXAMPLE", "[REDACTED]"),
    ("id=ASIAY34FZKBOKMUTVV7A;", "id=[REDACTED];"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[REDACTED]"),
    ("ghp_" + _A36, "[REDACTED]"),
    ("token ghs_" + _A36 + "x", "token [REDACTED]"),
    ("github_pat_11ABCDEFG0" + _A36, "[REDACTED]"),
    ("glpat-" + _A36[:20], "[REDACTED]"),
    ("xoxb-123456789012-1234567890123-" + _A36[:24], "[REDACTED]"),
    ("XOXP-1-2-abc", "[REDACTED]"),
    ("https://hooks.slack.com/services/T000/B000/XXXXXXXX", "[REDACTED]"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "[REDACTED]"),
    ("AIzaSyA-" + _A36[:31], "[REDACTED]"),
    ("AccountKey=" + "a" * 86 + "==", "[REDACTED]"),
    ("SG." + _A36[:22] + "." + (_A36 + _A36)[:43], "[REDACTED]"),
    ("sq0csp-" + _A36 + "abcdefg", "[REDACTED]"),
    ("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl." + _A36[:27], "[REDACTED]"),
    ("pypi-AgEIcHlwaS5vcmc" + _A36 * 2, "[REDACTED]"),
    ("npm_" + _A36, "[REDACTED]"),
    ("https://user:hunter2@db.example/x", "https[REDACTED]db.example/x"),
    ("-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\nIBAAK=\\n-----END RSA PRIVATE KEY-----",
     "[REDACTED]-----END RSA PRIVATE KEY-----"),
    ("hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH", "[REDACTED]"),
    ("gsk_" + _A36 + _A36[:16], "[REDACTED]"),
    ("two: sk-aaaaaaaaaa and AKIAIOSFODNN7EXAMPLE", "two: [REDACTED] and [REDACTED]"),
]  # fmt: skip
# what a gateway logs and must never be masked (a masked id would be quarantined)
NOT_SECRETS = [
    "req_01J9ZQ3X4K8M2N5P7R9T1V3W5Y", "evt-2026-11-20-000001", "acct_acme", "key_acme_1", "openai/gpt-5.5",
    "deepseek/deepseek-v4", "chatcmpl-9xYzAbCdEfGhIjKlMnOpQrStUv", "/v1/chat/completions", "rate_limit_exceeded",
    "bearer token missing", "550e8400-e29b-41d4-a716-446655440000", "task-sk-1", "skeleton-key", "AKIA-short",
    "0123456789abcdef0123456789abcdef-us1", "ACe0123456789abcdef0123456789abcd", "eyJ only", "stop", "length",
]  # fmt: skip


@functools.cache
def _masking_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory connection with the macro installed: the property runs 200 examples, and
    installing the macro (one regex per secret format) per example was most of its time."""
    from pipeline.redact import install_sql_macro

    con = duckdb.connect()
    install_sql_macro(con)
    return con


def _sql_mask(texts: list[str]) -> list[str]:
    con = _masking_connection()
    return [con.execute("SELECT mask_secrets(?)", [t]).fetchone()[0] for t in texts]  # type: ignore[index]


def test_every_secret_format_is_masked_alike_in_python_and_sql() -> None:
    from pipeline.redact import mask_secrets

    texts = [t for t, _ in SECRET_EXAMPLES]
    expected = [m for _, m in SECRET_EXAMPLES]
    assert [mask_secrets(t) for t in texts] == expected
    assert _sql_mask(texts) == expected


def test_ids_and_words_a_gateway_logs_are_not_masked() -> None:
    from pipeline.redact import mask_secrets

    assert [mask_secrets(t) for t in NOT_SECRETS] == NOT_SECRETS
    assert _sql_mask(NOT_SECRETS) == NOT_SECRETS


def test_what_detect_secrets_finds_in_the_examples_is_masked() -> None:
    """The patterns are derived from detect-secrets' regex plugins: whatever those plugins'
    regexes find in an example is gone after masking (re-check after upgrading it)."""
    plugins = pytest.importorskip("detect_secrets.plugins")
    from pipeline.redact import mask_secrets

    names = (
        "aws.AWSKeyDetector", "github_token.GitHubTokenDetector", "gitlab_token.GitLabTokenDetector",
        "stripe.StripeDetector", "slack.SlackDetector", "jwt.JwtTokenDetector", "openai.OpenAIDetector",
        "azure_storage_key.AzureStorageKeyDetector", "sendgrid.SendGridDetector", "square_oauth.SquareOAuthDetector",
        "discord.DiscordBotTokenDetector", "pypi_token.PypiTokenDetector", "private_key.PrivateKeyDetector",
    )  # fmt: skip
    found: dict[str, int] = {}
    for name in names:
        module, cls = name.split(".")
        detector = getattr(__import__(f"{plugins.__name__}.{module}", fromlist=[cls]), cls)
        for text, _ in SECRET_EXAMPLES:
            for regex in detector.denylist:
                for match in regex.finditer(text):
                    secret = match.group(0)
                    if len(secret) >= 8:
                        found[name] = found.get(name, 0) + 1
                        assert secret not in mask_secrets(text), (name, text)
    assert sorted(found) == sorted(names)  # the table exercises every plugin the patterns come from


# pieces of texts: the secret examples, the words that are not secrets, any characters
TEXT_PARTS = st.lists(
    st.sampled_from([t for t, _ in SECRET_EXAMPLES] + NOT_SECRETS)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(TEXT_PARTS)
def test_python_and_sql_mask_any_text_alike(parts: list[str]) -> None:
    from pipeline.redact import mask_secrets

    text = " ".join(parts) + "".join(parts)
    assert _sql_mask([text]) == [mask_secrets(text)]


def _sql_carries(texts: list[str]) -> list[bool]:
    con = _masking_connection()
    return [con.execute("SELECT carries_secret(?)", [t]).fetchone()[0] for t in texts]  # type: ignore[index]


def test_carries_secret_is_exactly_whether_masking_changes_the_text() -> None:
    """parse.sql quarantines an id by carries_secret(id) (a regex test) where it compared
    mask_secrets(id) with id: the same verdict on every example, secret or not."""
    texts = [t for t, _ in SECRET_EXAMPLES] + NOT_SECRETS + ["", "[REDACTED]", "id-[REDACTED]"]
    assert _sql_carries(texts) == [m != t for t, m in zip(texts, _sql_mask(texts), strict=True)]
    assert any(_sql_carries(texts)) and not all(_sql_carries(texts))


@settings(max_examples=200, deadline=None)
@given(TEXT_PARTS)
def test_carries_secret_agrees_with_masking_on_any_text(parts: list[str]) -> None:
    text = "".join(parts)
    assert _sql_carries([text]) == [_sql_mask([text])[0] != text]
