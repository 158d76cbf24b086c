"""The SQL macros parse.sql and store_batch.sql call: lone-surrogate repair, bounded and
redacted excerpts for the quarantine, the JSON key count, and the findings that word a
quarantine message once.
"""

from __future__ import annotations

EXCERPT_BYTES = 300
# Lone UTF-16 surrogate escapes -> `replacement`, leaving valid pairs and escaped backslashes
# alone (pass 1 marks each lone escape with chr(1), pass 2 replaces the marked ones). Only
# applied to lines without chr(1). Used by parse.sql and by the R5 recount of repaired lines.
REPAIR_SURROGATES_MACRO = r"""
CREATE OR REPLACE TEMP MACRO repair_lone_surrogates(s, replacement) AS
replace(regexp_replace(
    regexp_replace(s,
        '(\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})',
        '\1' || chr(1) || '\2', 'g'),
    chr(1) || '\\u[dD][89a-fA-F][0-9a-fA-F]{2}', replacement, 'g'),
  chr(1), '')
"""
# Whole lines through read_csv: a delimiter no valid JSON line contains (raw control bytes),
# no quoting. read_csv silently drops trailing delimiters, though ("x\x1e\x1f" reads as "x",
# a line of only "\x1e\x1f" as an empty one), so a file is first checked with
# nullstr='\n' (under which any delimiter is an error; it cannot read lines itself, as it
# skips empty lines and so breaks the numbering): a file with the bytes goes to the fallback.
# What the quarantine keeps of a JSON object record: re-serialized (so a key written with \u
# escapes is decoded and then masked), without messages/output_text, keys masked, and at most
# QUARANTINE_RECORD_CHARS of it (a record with a 20 MB id is kept as an excerpt; the source
# file stays the original). bounded_excerpt(s, n): s, or its first n characters and a note of
# the full length, which is longer than n, so a cut id never equals a real (bounded) one.
QUARANTINE_RECORD_CHARS = 4096
BOUNDED_EXCERPT_MACRO = """
CREATE OR REPLACE TEMP MACRO bounded_excerpt(s, n) AS
CASE WHEN length(s) > n THEN left(s, n) || ' ...[cut: ' || length(s) || ' characters]' ELSE s END
"""
REDACTED_RECORD_MACRO = f"""
CREATE OR REPLACE TEMP MACRO redacted_json_record(line) AS
bounded_excerpt(mask_secrets(CAST(json_merge_patch(line, '{{"messages": null, "output_text": null}}') AS VARCHAR)),
                {QUARANTINE_RECORD_CHARS})
"""
# The number of object keys in a *minified* JSON text (json() or a VARIANT written as JSON):
# after dropping escaped backslashes, then escaped quotes (left to right, so a run of
# backslashes pairs up as the JSON grammar reads it), every `"` left delimits a string, and
# a string followed by `:` is a key. Cheap (replace, not a regex), and exact for valid JSON.
# Without a backslash (nearly every line) there is nothing to drop: minified JSON has a `"`
# only as a delimiter then, so counting `":` alone is exact and skips four passes over m.
JSON_KEY_COUNT_MACRO = r"""
CREATE OR REPLACE TEMP MACRO json_key_count(m) AS
CASE WHEN contains(m, '\\')
     THEN (strlen(replace(replace(m, '\\', ''), '\"', ''))
           - strlen(replace(replace(replace(m, '\\', ''), '\"', ''), '":', ''))) // 2
     ELSE (strlen(m) - strlen(replace(m, '":', ''))) // 2 END
"""
# The canonical form's fast path (parse.sql, `recon`): the member `"k":value` of a value x
# read by json_transform as JSON, whose JSON type `ty` json_type gave (NULL: absent), spelled
# as the VARIANT written back as JSON spells it, for the values whose spelling is known: a
# string (parse.sql takes this path only for lines without a backslash, so the string is its
# bytes between quotes, as the VARIANT writes it), true/false, null, and an integer that fits
# BIGINT (digits, `-` if negative; `-0` reads as 0). Anything else (a float, a bigger integer,
# an array, an object) gives NULL: the member is left out, so the reconstruction has fewer
# keys than the line, and the line takes the VARIANT path. NULL also for an absent value.
CANONICAL_MEMBER_MACRO = r"""
CREATE OR REPLACE TEMP MACRO canonical_member(k, ty, x) AS
'"' || k || '":' || CASE WHEN ty IN ('VARCHAR', 'BOOLEAN') THEN CAST(x AS VARCHAR)
                         WHEN ty = 'NULL' THEN 'null'
                         WHEN ty IN ('BIGINT', 'UBIGINT') THEN CAST(TRY_CAST(x AS BIGINT) AS VARCHAR) END
"""
# What DuckDB's JSON reader accepts beyond RFC 8259 (JSON Lines are RFC 8259 texts): a comma
# before a closing bracket, and NaN/Infinity (any case, signed) as numbers. NULL for a
# standard text, else what is wrong with it. Exact for a line json_valid() accepts: with every
# string blanked (the texts are valid, so each string is one match), a standard text keeps
# only brackets, commas, colons, whitespace, numbers (letters e/E) and true/false/null.
# parse.sql asks it only of lines a cheap test flags (docs/hostile-input.md).
JSON_EXTENSION_MACROS = (
    r"""
CREATE OR REPLACE TEMP MACRO json_extension_of_bare(bare) AS
CASE WHEN regexp_matches(bare, ',[ \t\r\n]*[\]}]') THEN 'a comma before a closing bracket'
     WHEN regexp_matches(regexp_replace(bare, 'true|false|null', '', 'g'), '[a-df-zA-DF-Z]')
          THEN 'NaN or Infinity is not a JSON number' END
""",
    r"""
CREATE OR REPLACE TEMP MACRO json_extension(line) AS
json_extension_of_bare(regexp_replace(line, '"(?:[^"\\]|\\.)*"', '""', 'g'))
""",
)
# A failing check of parse.sql, as a struct that parse.sql's `worded` step turns into the
# {reason, field, message} of the quarantine: the message as written (finding), followed by
# describe_json(value) (finding_described), or by the line's ts, masked and cut, and a tail
# (finding_ts). Wording them in one place keeps mask_secrets at one call site instead of
# ~40: DuckDB compiles the regex of each call site whenever the statement is planned.
FINDING_MACROS = (
    "CREATE OR REPLACE TEMP MACRO finding(reason, field, message) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': CAST(NULL AS VARCHAR), 'value': CAST(NULL AS JSON), 'tail': CAST(NULL AS VARCHAR)}",
    "CREATE OR REPLACE TEMP MACRO finding_described(reason, field, message, value) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': 'value', 'value': CAST(value AS JSON), 'tail': CAST(NULL AS VARCHAR)}",
    "CREATE OR REPLACE TEMP MACRO finding_ts(reason, field, message, tail) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': 'ts', 'value': CAST(NULL AS JSON), 'tail': tail}",
)
