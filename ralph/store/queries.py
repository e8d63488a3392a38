"""Load the named SQL blocks (`-- name: claim_insert`) a backend runs.

`common.sql` holds the queries both dialects share, written once with `:name` placeholders; a
cast written right after a placeholder (`:labels::jsonb`) is kept for PostgreSQL and dropped
for SQLite, which needs none. `sqlite.sql` and `postgres.sql` hold the queries that genuinely
differ (locking, upserts, json functions, planner hints), each in its own placeholder style.
A name is defined once: in common.sql, or in both dialect files.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

# The package's own files, read as files: importlib.resources would add ~2 ms of imports
# (tempfile, shutil, zlib, bz2, lzma) to every CLI start, and ralph is never run from a zip.
HERE = Path(__file__).resolve().parent

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
# A string literal, a comment, a placeholder with an optional cast, a bare cast, a percent sign.
_TOKEN = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![:\w]):(\w+)((?:::\w+)?)|::\w+|%")
DIALECTS = ("sqlite", "postgres")


def parse(text: str) -> dict[str, str]:
    """Split SQL text into {name: statement} on `-- name:` lines."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = body.strip().rstrip(";").strip()
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        queries[name] = statement
    return queries


def translate(statement: str, dialect: str) -> str:
    """A common.sql statement in `dialect`'s placeholder style.

    PostgreSQL (psycopg): `:name` becomes `%(name)s` and every other `%` becomes `%%`, in
    strings and comments too, since psycopg reads placeholders everywhere. SQLite keeps `:name`
    and drops the cast after it; a cast on anything else has no SQLite spelling and is refused.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    pg = dialect == "postgres"

    def token(match: re.Match[str]) -> str:
        text, name, cast = match.group(0), match.group(1), match.group(2)
        if name is not None:
            return f"%({name})s{cast}" if pg else f":{name}"
        if text.startswith("::"):
            if pg:
                return text
            raise ValueError(f"a cast on something other than a placeholder in common.sql: {text}")
        return text.replace("%", "%%") if pg else text

    return _TOKEN.sub(token, statement)


@cache
def load(filename: str) -> dict[str, str]:
    """The named queries of `ralph/store/<filename>`."""
    return parse((HERE / filename).read_text(encoding="utf-8"))


@cache
def for_dialect(dialect: str) -> dict[str, str]:
    """Every named query a backend runs: common.sql translated, plus `<dialect>.sql`."""
    own = load(f"{dialect}.sql")
    common = load("common.sql")
    both = sorted(set(own) & set(common))
    if both:
        raise ValueError(f"{dialect}.sql redefines {', '.join(both)} of common.sql")
    return {**{n: translate(q, dialect) for n, q in common.items()}, **own}


@cache
def schema(backend: str) -> list[tuple[int, str]]:
    """The schema migrations of a backend, as (version, sql) sorted by version."""
    folder = HERE / "schema"
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(rf"{backend}_(\d+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)
