"""Load the named SQL blocks of a backend's `.sql` file (`-- name: claim_insert`)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

# The package's own files, read as files: importlib.resources would add ~2 ms of imports
# (tempfile, shutil, zlib, bz2, lzma) to every CLI start, and ralph is never run from a zip.
HERE = Path(__file__).resolve().parent

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


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


@cache
def load(filename: str) -> dict[str, str]:
    """The named queries of `ralph/store/<filename>`."""
    return parse((HERE / filename).read_text(encoding="utf-8"))


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
