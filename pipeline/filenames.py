"""File names built from data are names, never paths (docs/hostile-input.md).

An account id is whatever the gateway logged: ``../../etc/x``, ``a/b``, ``..``, 5,000
characters, or text in any script. A draft statement is named ``draft-{account_id}-{period}``,
so the id must be made safe before it is part of a file name.

Rule: an id that is already a safe name part (``SAFE_PART``: ASCII letters, digits, ``_``, ``.``
and ``-``, not starting with ``.`` or ``-``, at most ``MAX_PART_CHARS`` characters) is used as
is, so the names of every normal id (and of every issued file already stored in
``statement_files``, which replay compares byte for byte) stay what they were. Any other id
becomes a slug (unsafe characters replaced by ``_``, at most ``SLUG_CHARS`` characters) plus
``+`` and the first 12 hex digits of the id's SHA-256 (UTF-8). ``+`` is not allowed in a safe
part, so a slugged name never equals the name of another, safe id, and two ids that slug
alike still get different hashes.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_PART_CHARS", "SAFE_PART", "checked_file_name", "name_part"]

MAX_PART_CHARS = 64
SLUG_CHARS = 40
HASH_HEX = 12
SAFE_PART = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.\-]{{0,{MAX_PART_CHARS - 1}}}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
# a whole file name we write: a safe part, optionally with '+' and a hash, and suffixes
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,199}")


def name_part(value: str) -> str:
    """``value`` as part of a file name: itself when safe, else ``slug+hash`` (see module doc).

    >>> name_part("acct_northwind"), name_part("../../etc/x")
    ('acct_northwind', 'etc_x+56da1a2ef2df')
    """
    if SAFE_PART.fullmatch(value):
        return value
    slug = _UNSAFE.sub("_", value).lstrip("._-")[:SLUG_CHARS] or "id"
    return f"{slug}+{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:HASH_HEX]}"


def checked_file_name(name: str, error: type[Exception] = ValueError) -> str:
    """``name`` if it is a plain file name of the kind this program writes, else ``error``.

    For names read back from the database (``statement_files.file_name``) before a file is
    written under them: a tampered or corrupt row must not become a path.
    """
    if not _FILE_NAME.fullmatch(name):
        raise error(f"stored file name {name[:80]!r} is not a plain file name; refusing to write it")
    return name
