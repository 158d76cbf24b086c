"""Secrets never leave the pipeline: one pattern, used by Python and by the SQL.

Raw API keys (``sk-...``) and bearer tokens that show up in logs are replaced wherever text is
stored or printed: quarantine copies, error messages, CLI output.
"""

from __future__ import annotations

import re

import duckdb

# RE2 (DuckDB) and Python ``re`` both accept this pattern.
SECRET_PATTERN = r"(sk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}|[Bb]earer\s+[A-Za-z0-9._~+/\-]{8,}=*)"
REDACTED = "[REDACTED]"
_SECRET = re.compile(SECRET_PATTERN)


def mask_secrets(text: str) -> str:
    """Replace every API key or bearer token in ``text``."""
    return _SECRET.sub(REDACTED, text)


def install_sql_macro(con: duckdb.DuckDBPyConnection) -> None:
    """Define the SQL helpers of the ingest SQL for this connection.

    ``mask_secrets(text)`` uses the same pattern as Python; ``describe_json(value)`` words a
    JSON value for an error message ("got integer 12", "got string \"2\"", "it is missing").
    """
    pattern = SECRET_PATTERN.replace("'", "''")
    con.execute(f"CREATE OR REPLACE TEMP MACRO mask_secrets(s) AS regexp_replace(s, '{pattern}', '{REDACTED}', 'g')")
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO describe_json(v) AS
        CASE WHEN v IS NULL OR json_type(v) = 'NULL' THEN 'but it is missing or null'
             ELSE 'got ' || CASE json_type(v)
                 WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'integer' WHEN 'UBIGINT' THEN 'integer'
                 WHEN 'DOUBLE' THEN 'number' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'ARRAY' THEN 'array'
                 WHEN 'OBJECT' THEN 'object' ELSE lower(json_type(v)) END
               || CASE WHEN json_type(v) IN ('ARRAY', 'OBJECT') THEN ''
                       ELSE ' ' || left(CAST(v AS VARCHAR), 40) END
        END
        """
    )
