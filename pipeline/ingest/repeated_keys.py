"""R1/SPEC section 1: an object that repeats a key is a parse_error. parse.sql finds such
lines set-based; this module names the key and checks the lines parse.sql cannot.
"""

from __future__ import annotations

import json
import re

import duckdb

from core.db import insert_many
from pipeline.ingest import recounting
from pipeline.redact import mask_secrets

# Strings (group 1; group 2 is the colon that makes one a key) and brackets of a JSON text.
# Scanned left to right over valid JSON, the string pattern always starts at a real string
# (outside strings JSON has no quote character), so what it calls a key is one.
_JSON_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")\s*(:)?|[{}\[\]]')


def nesting_depth(line: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(line):
        bracket = token.group(0)
        if bracket in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in ("]", "}"):
            depth -= 1
    return deepest


def first_repeated_key(line: str) -> tuple[str, str] | None:
    """(path of the object, key) of the first key that an object of ``line`` repeats, or None.

    ``line`` must be valid JSON (parse.sql decided that). Keys are compared decoded, so
    ``"a"`` and ``"\\u0061"`` are the same key. Iterative, one pass over the text, memory
    bounded by the line: used for the lines parse.sql cannot check (over 1 MiB or deeply
    nested) and to name the key parse.sql found repeated. The path names objects by their
    keys and array elements by ``[]`` (e.g. ``messages[]``; ``""`` is the top level).
    """
    # Each level keeps only its own part of the path (and whether the path so far is empty):
    # the path is joined when a repeat is found. Building it per level copied the path once a
    # level, quadratic in the depth (100,000 nested arrays took 5 s).
    stack: list[tuple[set[str] | None, str, bool]] = []  # (keys seen; None for an array, part, path empty)
    pending = ""  # the last key read in the innermost object: the name of a container value
    for token in _JSON_TOKEN.finditer(line):
        text, colon = token.group(1), token.group(2)
        if text is not None:
            if colon is None or not stack or stack[-1][0] is None:
                continue
            try:
                key = json.loads(text, strict=False)
            except ValueError:
                key = text
            keys = stack[-1][0]
            if key in keys:
                return "".join(part for _, part, _ in stack), key
            keys.add(key)
            pending = key
            continue
        bracket = token.group(0)
        if bracket in "{[":
            if not stack:
                part, empty = "", True
            elif stack[-1][0] is None:
                part, empty = "[]", False
            else:
                part = pending if stack[-1][2] else f".{pending}"
                empty = stack[-1][2] and not pending
            stack.append((set() if bracket == "{" else None, part, empty))
        elif stack:
            stack.pop()
    return None


def repeated_key_problem(found: tuple[str, str] | None) -> tuple[str | None, str]:
    """(field, message) of the parse_error for a line whose object repeats a key.

    Keys under ``messages``/``output_text`` are prompt or output text a client chose: only
    the field is named. Elsewhere the key and its path, escaped to one line, masked, cut.
    """
    if found is None:  # parse.sql saw fewer keys after reading than written; not located
        return None, "line is not a record: an object repeats a key"
    path, key = found
    top = path.split(".")[0].split("[")[0]
    if top in ("messages", "output_text"):
        return top, f"line is not a record: an object inside {top} repeats a key (not shown: it is prompt text)"
    shown = mask_secrets(json.dumps(key, ensure_ascii=False))[:80]
    where = f" in {mask_secrets(path)[:80]}" if path else ""
    field = mask_secrets(f"{path}.{key}" if path else key)[:120]
    return field, f"line is not a record: repeated key {shown}{where} (JSON readers differ on which value counts)"


def check_repeated_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Name the repeated key of lines parse.sql found one in; check the lines it could not.

    Lines are read in fetches of bounded size (as for the recount), one staged line at a time
    in Python; a found repeat turns the line into a parse_error whatever else it had.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE key_suspects AS
        SELECT p.file_order, p.line_no, strlen(coalesce(s.line, '')) + 1 AS bytes
        FROM parsed p JOIN staged_lines s USING (file_order, line_no)
        WHERE p.key_check IS NOT NULL
        """
    )
    findings: list[tuple[int, int, str | None, str]] = []
    for f, lo, hi in recounting.fetch_runs(
        con, recounting.RECOUNT_FETCH_ROWS, recounting.RECOUNT_FETCH_BYTES, "key_suspects"
    ):
        rows = con.execute(
            """
            SELECT p.line_no, p.key_check, s.line
            FROM parsed p JOIN staged_lines s USING (file_order, line_no)
            WHERE p.file_order = $f AND p.line_no BETWEEN $lo AND $hi AND p.key_check IS NOT NULL
              AND s.file_order = $f AND s.line_no BETWEEN $lo AND $hi
            """,
            {"f": f, "lo": lo, "hi": hi},
        ).fetchall()
        for line_no, check, line in rows:
            found = first_repeated_key(line)
            if found is not None or check == "repeated":
                findings.append((f, int(line_no), *repeated_key_problem(found)))
        del rows
    if not findings:  # the usual case: nothing to update (and no UPDATE to plan)
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE key_findings (file_order INTEGER, line_no BIGINT, field VARCHAR, message VARCHAR)"
    )
    insert_many(con, "INSERT INTO key_findings VALUES (?, ?, ?, ?)", findings)
    con.execute(
        """
        UPDATE parsed SET
            problem = {'reason': 'parse_error', 'field': k.field, 'message': k.message},
            redacted_record = redacted_json_record(CASE WHEN parsed.surrogates_replaced
                THEN repair_lone_surrogates(s.line, '\\\\ufffd') ELSE s.line END)
        FROM key_findings k, staged_lines s
        WHERE parsed.file_order = k.file_order AND parsed.line_no = k.line_no
          AND s.file_order = k.file_order AND s.line_no = k.line_no
        """
    )
