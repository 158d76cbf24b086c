"""Secrets never leave the pipeline: one set of patterns, used by Python and by the SQL.

API keys, tokens and credentials that show up in logs are replaced wherever text is stored or
printed: quarantine copies, error messages, CLI output. Text is masked *before* it is cut to
length: a key cut in the middle can fall below a pattern's minimum length and slip through.

The patterns (``SECRET_PATTERNS``) are derived from the regex plugins of Yelp's detect-secrets
1.5.0 (``detect_secrets/plugins/*.py``, named per pattern below), plus provider key formats an
LLM gateway sees that detect-secrets has no plugin for. detect-secrets itself is not a runtime
dependency: it scans source lines with plugin objects (several need the surrounding line,
entropy or keyword context), its regexes use Python-only syntax (look-arounds) that DuckDB's
RE2 refuses, and the same mask has to run inside SQL over millions of rows. So each pattern
here is written in the syntax both Python ``re`` and RE2 read the same way (no look-arounds,
no ``\\s``/``\\d``/inline flags, whose Unicode meaning differs between the two), widened to
take the whole token, and ``tests/test_secrets.py`` checks with detect-secrets (a dev
dependency) that everything it finds in the example table is masked here too. Plugins left out
on purpose match plain ids a gateway logs (Twilio ``AC``+32, Mailchimp ``…-us1``, Artifactory
``AKC…``, Telegram ``digits:…``) or need context (keyword, high entropy, IBM, SoftLayer,
Cloudant); a masked id would merge records, so a false alarm there quarantines a good record.
"""

from __future__ import annotations

import re

import duckdb

# (name, pattern, where it comes from). Order matters only for overlapping matches.
SECRET_PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "private key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\t\r\n ]|\\[nrt])*",
        "private_key.py, widened to the key body",
    ),
    (
        "OpenAI / Anthropic / DeepSeek style key",
        r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}",
        "openai.py, widened to any sk- key (sk-ant-, sk-proj-)",
    ),
    (
        "bearer token",
        # the separator also as JSON escapes it (\t): quarantine masks a record's JSON text
        r"[Bb][Ee][Aa][Rr][Ee][Rr](?:[ \t]|\\t)+[A-Za-z0-9._~+/\-]{8,}=*",
        "RFC 6750 token68, any letter case",
    ),
    ("Stripe key", r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,}", "stripe.py"),
    ("AWS access key id", r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}", "aws.py"),
    (
        "AWS secret in a key=value",
        r"[Aa][Ww][Ss][A-Za-z_\-]{0,20}[Ss][Ee][Cc][Rr][Ee][Tt][A-Za-z_\-]{0,20}"
        r"(?:\\?[\"'])?(?:[ \t]|\\t)*[:=](?:[ \t]|\\t)*(?:\\?[\"'])?[0-9A-Za-z/+]{40}",
        "aws.py (secret access key)",
    ),
    (
        "GitHub token",
        r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,}|github_pat_[A-Za-z0-9_]{22,}",
        "github_token.py, plus fine-grained tokens",
    ),
    (
        "GitLab token",
        r"(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-[A-Za-z0-9_\-]{20,}"
        r"|GR1348941[A-Za-z0-9_\-]{20,}",
        "gitlab_token.py",
    ),
    (
        "Slack token",
        r"[Xx][Oo][Xx][AaBbOoPpRrSs]-(?:[0-9]+-)+[A-Za-z0-9]+"
        r"|https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
        "slack.py",
    ),
    ("JSON Web Token", r"eyJ[A-Za-z0-9_=\-]+\.[A-Za-z0-9_=\-]+\.?[A-Za-z0-9_.+/=\-]*", "jwt.py, signature included"),
    ("Google API key", r"AIza[0-9A-Za-z_\-]{35}", "Google API key format (no detect-secrets plugin)"),
    ("Azure storage key", r"AccountKey=[A-Za-z0-9+/=]{88}", "azure_storage_key.py"),
    ("SendGrid key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", "sendgrid.py"),
    ("Square secret", r"sq0(?:csp|atp)-[0-9A-Za-z_\-]{22,}", "square_oauth.py"),
    ("Discord bot token", r"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27}", "discord.py"),
    ("PyPI token", r"pypi-AgE[A-Za-z0-9_\-]{70,}", "pypi_token.py"),
    ("npm token", r"npm_[A-Za-z0-9]{36}", "npm.py (token format)"),
    ("password in a URL", r"://[^{}\t\r\n /:@\"]+:[^{}\t\r\n /@\"]+@", "basic_auth.py"),
    (
        "LLM provider key",
        r"hf_[A-Za-z]{34}|gsk_[A-Za-z0-9]{40,}|xai-[A-Za-z0-9]{40,}|r8_[A-Za-z0-9]{30,}|pplx-[A-Za-z0-9]{40,}",
        "Hugging Face, Groq, xAI, Replicate, Perplexity key formats",
    ),
)
# RE2 (DuckDB) and Python ``re`` both accept this pattern and match the same text with it.
SECRET_PATTERN = "(" + "|".join(pattern for _, pattern, _ in SECRET_PATTERNS) + ")"
REDACTED = "[REDACTED]"
_SECRET = re.compile(SECRET_PATTERN)


# Where DuckDB quotes the data that caused an error ("... Input: <the line>", "Original Line:
# <the line>"): that data may be prompt text, so an error message is cut before it.
_QUOTED_DATA = re.compile(r"\s*(Input:|Original Line:|LINE \d+:).*$", re.DOTALL)


def mask_secrets(text: str) -> str:
    """Replace every key, token or credential of ``SECRET_PATTERNS`` in ``text``."""
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

    ``mask_secrets(text)`` uses the same pattern as Python (``carries_secret(text)``: whether it
    would mask anything); ``describe_json(value)`` words a
    JSON value for an error message ("got integer 12", "got string \"2\"", "it is missing"),
    masked before it is cut to 40 characters; ``describe_json_type(json_type)`` words a type
    only, for fields whose value is prompt or output text.
    """
    pattern = SECRET_PATTERN.replace("'", "''")
    con.execute(f"CREATE OR REPLACE TEMP MACRO mask_secrets(s) AS regexp_replace(s, '{pattern}', '{REDACTED}', 'g')")
    # mask_secrets(s) <> s, without building the masked string (half the time a row): every
    # pattern matches at least one character and none matches REDACTED, so masking changes s
    # exactly when the pattern occurs in it (tests/test_secrets.py checks both on the same texts)
    con.execute(f"CREATE OR REPLACE TEMP MACRO carries_secret(s) AS regexp_matches(s, '{pattern}')")
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
