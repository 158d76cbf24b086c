"""docs/schema.md is generated from the database's COMMENTs and must not go stale."""

from __future__ import annotations

from pathlib import Path

from core.db import connect
from reports.schema_doc import current_schema_markdown

SCHEMA_MD = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


def test_every_table_view_and_column_has_a_comment() -> None:
    con = connect(":memory:")
    try:
        missing = con.execute(
            """
            SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND coalesce(trim(comment), '') = ''
            UNION ALL
            SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary
                AND coalesce(trim(comment), '') = ''
            UNION ALL
            SELECT table_name || '.' || column_name FROM duckdb_columns()
            WHERE NOT internal AND database_name <> 'temp' AND coalesce(trim(comment), '') = ''
            ORDER BY 1
            """
        ).fetchall()
    finally:
        con.close()
    assert missing == [], "add COMMENT ON ... in a migration for: " + ", ".join(m for (m,) in missing)


def test_docs_schema_md_is_up_to_date() -> None:
    assert SCHEMA_MD.read_text(encoding="utf-8") == current_schema_markdown(), (
        "docs/schema.md is stale: run `make schema-doc` (infergate-billing schema-doc > docs/schema.md)"
    )


def test_schema_doc_describes_every_view_and_its_columns() -> None:
    text = current_schema_markdown()
    for view in ("daily_usage", "monthly_totals", "top_accounts", "non_billed_by_reason", "estimated_usage_share",
                 "margin_by_model", "spend_limit_status", "rejections_by_account"):  # fmt: skip
        assert f"## {view}\n\n*view* — " in text
    assert "| `crossed_on` | `DATE` | yes | UTC day of the billed attempt" in text
