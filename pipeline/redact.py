"""Secrets never leave the pipeline: one pattern, used by Python and by the SQL.

Raw API keys (``sk-...``) and bearer tokens that show up in logs are replaced wherever text is
stored or printed: quarantine copies, error messages, CLI output. Text is masked *before* it is
cut to length: a key cut in the middle can fall below the pattern's minimum length and slip
through the mask.
"""

from __future__ import annotations

import re

import duckdb

# RE2 (DuckDB) and Python ``re`` both accept this pattern.
SECRET_PATTERN = r"(sk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}|[Bb]earer\s+[A-Za-z0-9._~+/\-]{8,}=*)"
REDACTED = "[REDACTED]"
_SECRET = re.compile(SECRET_PATTERN)


# Where DuckDB quotes the data that caused an error ("... Input: <the line>", "Original Line:
# <the line>"): that data may be prompt text, so an error message is cut before it.
_QUOTED_DATA = re.compile(r"\s*(Input:|Original Line:|LINE \d+:).*$", re.DOTALL)


def mask_secrets(text: str) -> str:
    """Replace every API key or bearer token in ``text``."""
    return _SECRET.sub(REDACTED, text)


def safe_error_message(exc: BaseException, limit: int = 300) -> str:
    """A one-line message for ``exc`` that can be printed and stored.

    First line only, cut before any data DuckDB quotes from its input (a log line, i.e.
    possibly prompt text), keys masked, at most ``limit`` characters. An ``OSError`` reads
    ``<file>: <reason>`` (e.g. ``out/x.csv: No space left on device``).
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return mask_secrets(_QUOTED_DATA.sub("", first))[:limit]


def install_sql_macro(con: duckdb.DuckDBPyConnection) -> None:
    """Define the SQL helpers of the ingest SQL for this connection.

    ``mask_secrets(text)`` uses the same pattern as Python; ``describe_json(value)`` words a
    JSON value for an error message ("got integer 12", "got string \"2\"", "it is missing"),
    masked before it is cut to 40 characters; ``describe_json_type(json_type)`` words a type
    only, for fields whose value is prompt or output text.
    """
    pattern = SECRET_PATTERN.replace("'", "''")
    con.execute(f"CREATE OR REPLACE TEMP MACRO mask_secrets(s) AS regexp_replace(s, '{pattern}', '{REDACTED}', 'g')")
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO describe_json_type(t) AS
        CASE WHEN t IS NULL OR t = 'NULL' THEN 'but it is missing or null'
             ELSE 'got ' || CASE t
                 WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'integer' WHEN 'UBIGINT' THEN 'integer'
                 WHEN 'DOUBLE' THEN 'number'  -- allow-float: names a JSON type, reads no value
                 WHEN 'BOOLEAN' THEN 'boolean' WHEN 'ARRAY' THEN 'array'
                 WHEN 'OBJECT' THEN 'object' ELSE lower(t) END
        END
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO describe_json(v) AS
        describe_json_type(json_type(v))
        || CASE WHEN v IS NULL OR json_type(v) IN ('NULL', 'ARRAY', 'OBJECT') THEN ''
                ELSE ' ' || left(mask_secrets(CAST(v AS VARCHAR)), 40) END
        """
    )
