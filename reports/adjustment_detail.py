"""Statement layout 8: the requests behind each prior-period adjustment (SPEC section 4: the
per-request detail CSV is for customers to reconcile; R10: late records become adjustments).

An adjustment line is the tokens an issued period's line holds now less every token already
issued for it (sql/statement_lines_due.sql). The attempts that make up that difference are
found against what the issued files say was billed, the one record that never changes:

* the **baseline** of (account, period): the attempts its own statement's detail CSV lists
  (every layout wrote one), plus those later layout-8 statements listed as ``added`` to it,
  less those they listed as ``removed``, statement by statement in issue order;
* ``added``: attempts of the period billed now and not in the baseline (a late request, a
  late retry that supersedes an attempt, a held attempt whose account now exists);
* ``removed``: attempts in the baseline not billed now (superseded by a late retry): their
  tokens and charge as billed (R10 kept their prices), negated;
* ``billed_before``: an adjustment line of the period issued on a statement of layout 4-7,
  which listed no requests: its tokens and their exact charge, negated, one row per line,
  until a layout-8 statement lists rows for the period (its rows then are in the baseline).

So, per adjusted period, model, token class and unit price, the rows' tokens are the line's
tokens and their exact charges sum to its tokens x unit price, which the line rounds half-up.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import duckdb

from reports.csvsafe import sql_neutralized
from reports.statement_model import ADJUSTMENT_DETAIL_FROM, LINES_BY_UNIT_PRICE_FROM, VERSION_SEPARATOR

ROWS = "adjustment_detail_rows"  # temp table: one row per attempt (or earlier line) behind the adjustments
_PAIRS = "adjustment_pairs"
_BASELINE = "adjustment_baseline"
_BASELINE_OF = "adjustment_baseline_of"  # per (account, period): the issued statements its baseline was read from
# an attempt's cells in a detail CSV that say which attempt a row is: a text cell is written
# neutralized, which is not one-to-one ("=e" and "'=e" both give "'=e"), so the request id and
# attempt number are matched too, and each row at most once (docs/invoicing.md, Layout 8)
_KEY_CELLS = (  # as read back
    "coalesce(event_id, '') AS event_cell, coalesce(request_id, '') AS request_cell, "
    "coalesce(attempt, '') AS attempt_cell"
)
_KEY_NOW = (
    f"{sql_neutralized('r.event_id')}, {sql_neutralized('r.request_id')}, coalesce(CAST(r.attempt AS VARCHAR), '')"
)
CHANGES = ("removed", "added", "billed_before")  # the order rows are listed in, per adjusted period


def _charge(tokens: str, price: str) -> str:
    """One class's exact charge, as rate.sql computes it."""
    return (
        f"CAST(CAST(CAST({tokens} AS DECIMAL(12,0)) * coalesce({price}, 0) AS DECIMAL(36,14))"
        " * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20))"
    )


def _read_detail(con: duckdb.DuckDBPyConnection, content: bytes, folder: Path) -> str:
    """A temp table of an issued detail CSV's cells (text, as written), from its stored bytes."""
    path = folder / "detail.csv"
    path.write_bytes(content)
    name = "issued_detail"
    header = content.split(b"\n", 1)[0].decode("utf-8").split(",")  # plain names, never quoted
    columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in header) + "}"
    source = str(path).replace("'", "''")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv('{source}', header = true, delim = ',', "
        f"quote = '\"', escape = '\"', auto_detect = false, columns = {columns})"
    )
    return name


def build(con: duckdb.DuckDBPyConnection, period: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Fill the temp table ``adjustment_detail_rows`` with the rows behind the adjustments of a
    statement of ``period`` for each (account, adjusted period) of ``pairs``."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_PAIRS} (account_id VARCHAR, original_period VARCHAR)")
    # kept for the connection: a statement run builds the rows twice (due_lines names the
    # versions, detail_csvs writes them), and reads each issued CSV once (_baseline)
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_BASELINE} (account_id VARCHAR, original_period VARCHAR, "
        "event_cell VARCHAR, request_cell VARCHAR, attempt_cell VARCHAR, billed_on VARCHAR, seq BIGINT)"
    )
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_BASELINE_OF} (account_id VARCHAR, original_period VARCHAR, "
        "statements VARCHAR)"
    )
    pairs = sorted(set(pairs))
    if pairs:
        con.executemany(f"INSERT INTO {_PAIRS} VALUES (?, ?)", pairs)
    with tempfile.TemporaryDirectory(prefix="infergate-detail-") as tmp:
        for account, origin in pairs:
            _baseline(con, period, account, origin, Path(tmp))
    tokens = ("input_uncached_tokens", "input_cached_tokens", "output_tokens", "reasoning_tokens", "image_tokens")
    removed_charge = " + ".join(
        _charge(f"r.{t}", f"r.unit_price_{c}")
        for t, c in zip(tokens[:3], ("input_uncached", "input_cached", "output"), strict=True)
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {ROWS} AS
        WITH now AS (
            SELECT r.*, row_number() OVER (
                PARTITION BY r.account_id, r.period, {_KEY_NOW}
                -- cells that collide: a still-billed attempt first, then one whose id is its cell
                ORDER BY r.outcome = 'billed' DESC, r.event_id = {sql_neutralized("r.event_id")} DESC,
                         r.ts, r.event_id, r.request_id) AS nth
            FROM rated_attempts r
            JOIN {_PAIRS} p ON p.account_id = r.account_id AND p.original_period = r.period
        ),
        base AS (
            SELECT *, row_number() OVER (
                PARTITION BY account_id, original_period, event_cell, request_cell, attempt_cell ORDER BY seq) AS nth
            FROM {_BASELINE}
        ),
        -- each attempt against at most one baseline row of the same cells, and the other way round
        matched AS (
            SELECT n.*, b.billed_on AS baseline_billed_on, b.seq IS NOT NULL AS in_baseline
            FROM now n LEFT JOIN base b ON b.account_id = n.account_id AND b.original_period = n.period
             AND b.event_cell = {sql_neutralized("n.event_id")} AND b.request_cell = {sql_neutralized("n.request_id")}
             AND b.attempt_cell = coalesce(CAST(n.attempt AS VARCHAR), '') AND b.nth = n.nth
        )
        SELECT n.account_id, n.period AS original_period, 'added' AS change, CAST(NULL AS VARCHAR) AS billed_on,
               n.request_id, n.event_id, n.attempt, n.ts, n.model, n.status, n.usage_source,
               {", ".join(f"n.{t}" for t in tokens)}, n.price_version,
               n.unit_price_input_uncached, n.unit_price_input_cached, n.unit_price_output,
               CAST(n.charge_total AS DECIMAL(38,20)) AS charge, CAST(NULL AS VARCHAR) AS token_class
        FROM matched n
        WHERE n.outcome = 'billed' AND NOT n.in_baseline
        UNION ALL
        SELECT r.account_id, r.period, 'removed', r.baseline_billed_on,
               r.request_id, r.event_id, r.attempt, r.ts, r.model, r.status, r.usage_source,
               {", ".join(f"-r.{t}" for t in tokens)}, r.price_version,
               r.unit_price_input_uncached, r.unit_price_input_cached, r.unit_price_output,
               CAST(-({removed_charge}) AS DECIMAL(38,20)), NULL
        FROM matched r
        WHERE r.outcome <> 'billed' AND r.in_baseline
        UNION ALL
        SELECT s.account_id, l.original_period, 'billed_before', l.statement_number,
               NULL, NULL, NULL, NULL, l.model, NULL, NULL,
               CASE WHEN l.token_class = 'input_uncached' THEN -l.quantity_tokens ELSE 0 END,
               CASE WHEN l.token_class = 'input_cached' THEN -l.quantity_tokens ELSE 0 END,
               CASE WHEN l.token_class = 'output' THEN -l.quantity_tokens ELSE 0 END,
               0, 0, l.price_version,
               CASE WHEN l.token_class = 'input_uncached' THEN l.unit_price_per_1m END,
               CASE WHEN l.token_class = 'input_cached' THEN l.unit_price_per_1m END,
               CASE WHEN l.token_class = 'output' THEN l.unit_price_per_1m END,
               CAST(-{_charge("l.quantity_tokens", "l.unit_price_per_1m")} AS DECIMAL(38,20)), l.token_class
        FROM statement_issued_lines l
        JOIN statements s USING (statement_number)
        JOIN {_PAIRS} p ON p.account_id = s.account_id AND p.original_period = l.original_period
        WHERE l.kind = 'adjustment' AND s.period < $period AND coalesce(s.layout_version, 1) < {ADJUSTMENT_DETAIL_FROM}
          -- a later layout-8 statement with rows for the period took it back already: its
          -- added and removed rows are in the baseline since
          AND NOT EXISTS (
              SELECT 1 FROM statement_issued_lines l8 JOIN statements s8 USING (statement_number)
              WHERE s8.account_id = s.account_id AND l8.kind = 'adjustment' AND l8.original_period = l.original_period
                AND coalesce(s8.layout_version, 1) >= {ADJUSTMENT_DETAIL_FROM} AND s8.period > s.period
                AND s8.period < $period)
        """,
        {"period": period},
    )


def _baseline(con: duckdb.DuckDBPyConnection, period: str, account: str, origin: str, folder: Path) -> None:
    """What the issued files say is billed of ``origin`` for ``account`` (module docstring)."""
    issued = con.execute(
        "SELECT s.statement_number, s.period, coalesce(s.layout_version, 1) FROM statements s "
        "JOIN statement_files f ON f.statement_number = s.statement_number AND f.kind = 'detail_csv' "
        "WHERE s.account_id = $a AND s.period < $p AND (s.period = $o OR (s.period > $o "
        f" AND coalesce(s.layout_version, 1) >= {ADJUSTMENT_DETAIL_FROM} AND s.statement_number IN ("
        "  SELECT statement_number FROM statement_issued_lines WHERE kind = 'adjustment' AND original_period = $o)))"
        " ORDER BY s.period, s.sequence_no",
        {"a": account, "p": period, "o": origin},
    ).fetchall()
    # issued files never change: the same statements give the same baseline, read once
    statements = ",".join(number for number, _, _ in issued)
    params = {"a": account, "o": origin}
    where = "WHERE account_id = $a AND original_period = $o"
    if con.execute(f"SELECT statements FROM {_BASELINE_OF} {where}", params).fetchall() == [(statements,)]:
        return
    con.execute(f"DELETE FROM {_BASELINE} {where}", params)
    con.execute(f"DELETE FROM {_BASELINE_OF} {where}", params)
    con.execute(f"INSERT INTO {_BASELINE_OF} VALUES ($a, $o, $s)", params | {"s": statements})
    for number, statement_period, layout in issued:
        (content,) = con.execute(  # one file at a time, not every one at once
            "SELECT content FROM statement_files WHERE statement_number = ? AND kind = 'detail_csv'", [number]
        ).fetchone() or (b"",)
        table = _read_detail(con, bytes(content), folder)
        seq = f"(SELECT coalesce(max(seq), 0) FROM {_BASELINE}) + row_number() OVER ()"
        if statement_period == origin:  # the period's own statement: every row is its usage
            kind = "kind = 'usage'" if layout >= ADJUSTMENT_DETAIL_FROM else "TRUE"
            con.execute(
                f"INSERT INTO {_BASELINE} SELECT $a, $o, {_KEY_CELLS}, $n, {seq} FROM {table} WHERE {kind}",
                params | {"n": number},
            )
            continue
        rows = f"FROM {table} WHERE kind = 'adjustment' AND original_period = $o"
        con.execute(
            f"INSERT INTO {_BASELINE} SELECT $a, $o, {_KEY_CELLS}, $n, {seq} {rows} AND change = 'added'",
            params | {"n": number},
        )
        # each removed row takes back one baseline row of the same cells (the earliest)
        con.execute(
            f"""DELETE FROM {_BASELINE} WHERE seq IN (
                SELECT b.seq FROM (
                    SELECT seq, event_cell, request_cell, attempt_cell, row_number() OVER (
                        PARTITION BY event_cell, request_cell, attempt_cell ORDER BY seq) AS nth
                    FROM {_BASELINE} WHERE account_id = $a AND original_period = $o) b
                JOIN (SELECT *, row_number() OVER (PARTITION BY event_cell, request_cell, attempt_cell) AS nth
                      FROM (SELECT {_KEY_CELLS}
                            {rows} AND change = 'removed')) r
                  USING (event_cell, request_cell, attempt_cell, nth))""",
            params,
        )


AdjustmentKey = tuple[str, str, str, str, Decimal, str]  # account, period, model, class, unit price, versions


def own_versions(con: duckdb.DuckDBPyConnection, period: str, keys: Sequence[AdjustmentKey]) -> list[str]:
    """The ``price_version`` of each adjustment line of a statement of ``period`` (layout 8 on),
    given its (account, adjusted period, model, token class, unit price, price_version as
    sql/statement_lines_due.sql gives it): the versions that priced its own tokens, those of
    the added and removed attempts behind it whose tokens do not cancel out, not every version
    of the period's line now (layouts 6-7). A line of a period issued per version keeps its one
    version; a line no attempt explains (only lines of a layout 4-7 statement behind it) keeps
    the versions of the period's line."""
    pairs = sorted({(k[0], k[1]) for k in keys})
    build(con, period, pairs)
    split = split_periods(con)
    versions = _versions_by_line(con)
    result = []
    for account, origin, model, klass, price, field in keys:
        own = None if (account, origin) in split else versions.get((account, origin, model, klass, price))
        result.append(versions_field(own) if own else field)
    return result


def _versions_by_line(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str, str, object], set[str]]:
    """Per (account, adjusted period, model, token class, unit price): the price versions whose
    rows' tokens of that class do not cancel out, i.e. the versions that priced the tokens an
    adjustment line sums (``build`` first).

    An added or removed row counts for its attempt's version. A ``billed_before`` row takes back
    a layout 4-7 line, which named every version of the period's line then, so its tokens cancel
    those of the versions it names: first one whose tokens it cancels exactly, then the rest
    from the latest version back; tokens none cancels name every version it named."""
    classes = " UNION ALL ".join(
        f"SELECT account_id, original_period, model, '{k}' AS token_class, unit_price_{k} AS price, price_version, "
        f"change = 'billed_before' AS before, {k}_tokens AS tokens FROM {ROWS} WHERE {k}_tokens <> 0"
        for k in ("input_uncached", "input_cached", "output")
    )
    nets: dict[tuple[str, str, str, str, object], dict[str, int]] = {}
    taken_back: list[tuple[tuple[str, str, str, str, object], str, int]] = []
    unexplained: dict[tuple[str, str, str, str, object], set[str]] = {}
    for account, origin, model, klass, price, version, before, total in con.execute(
        f"SELECT account_id, original_period, model, token_class, price, price_version, before, sum(tokens) "
        f"FROM ({classes}) GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        if before:
            taken_back.append(((account, origin, model, klass, price), version, int(total)))
        else:
            nets.setdefault((account, origin, model, klass, price), {})[version] = int(total)
    for key, field, tokens in taken_back:
        net = nets.setdefault(key, {})
        named = sorted(set(field.split(VERSION_SEPARATOR)), reverse=True)
        exact = [v for v in named if net.get(v, 0) == -tokens]
        for version in exact[:1] or named:
            if tokens == 0:
                break
            if net.get(version, 0) * tokens < 0:  # opposite signs: cancel what it can
                cancel = min(abs(net[version]), abs(tokens)) * (1 if tokens > 0 else -1)
                net[version] += cancel
                tokens -= cancel
        if tokens:  # tokens no attempt explains: every version the line named then
            unexplained.setdefault(key, set()).update(named)
    result = {key: {v for v, t in net.items() if t} for key, net in nets.items()}
    for key, named_then in unexplained.items():
        result.setdefault(key, set()).update(named_then)
    return {key: versions for key, versions in result.items() if versions}


def split_periods(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(account, period) whose lines were issued per price version (a statement of layout 1-5
    issued or adjusted them): their adjustment lines are one per version."""
    return set(
        con.execute(
            "SELECT DISTINCT s.account_id, l.original_period FROM statement_issued_lines l JOIN statements s "
            f"USING (statement_number) WHERE coalesce(s.layout_version, 1) < {LINES_BY_UNIT_PRICE_FROM}"
        ).fetchall()
    )


def versions_field(versions: Iterable[str]) -> str:
    return VERSION_SEPARATOR.join(sorted(set(versions)))
