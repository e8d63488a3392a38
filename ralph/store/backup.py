"""Online copies of a SQLite store, its integrity check, and putting a copy back.

`ralph run` takes a copy at start (`backup`), so a store damaged overnight (a full disk, a
killed copy, a bad sector) can be put back with `ralph db restore` losing at most one run's
bookkeeping. Copies go through SQLite's backup API, which reads a consistent snapshot while
workers keep writing (WAL readers are never blocked). PostgreSQL is backed up with pg_dump.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from ralph import errors
from ralph.store.backupnames import backups, backups_dir, restore_hint

KEEP = 5
# A copy's name: `<store stem>-<UTC time>.db`; the time sorts as text.
_STAMP = "%Y%m%dT%H%M%S"


def _stamp() -> str:
    now = time.time()
    return time.strftime(_STAMP, time.gmtime(now)) + f"{int(now * 1e6) % 1_000_000:06d}Z"


def _copy(source: Path, target: Path) -> None:
    """Copy a SQLite database through the backup API into `target` (written then renamed)."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)
        # A copy in rollback-journal mode is one self-contained file: reading it (quick_check,
        # a restore) leaves no -wal/-shm beside it. The store goes back to WAL when opened.
        dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.DatabaseError as exc:
        dst.close()
        partial.unlink(missing_ok=True)
        raise errors.StoreError(f"cannot copy {source}: {exc}", hint=restore_hint(source)) from exc
    finally:
        dst.close()
        src.close()
    os.replace(partial, target)


def backup(store_path: Path, keep: int = KEEP) -> Path:
    """Copy the store to `backups/<stem>-<time>.db` and drop all but the newest `keep` copies."""
    store_path = Path(store_path)
    if not store_path.is_file():
        raise errors.NoStoreError(str(store_path))
    folder = backups_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{store_path.stem}-{_stamp()}.db"
    _copy(store_path, target)
    for old in backups(store_path)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return target


def quick_check(path: Path) -> list[str]:
    """`PRAGMA quick_check` of a SQLite file: its problems, or [] when it is sound.

    A damaged page may make the check itself fail ("database disk image is malformed"):
    that is a problem too, not an exception.
    """
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def _is_ralph_store(path: Path) -> str | None:
    """Why `path` cannot be restored from (not SQLite, not ralph's, damaged), or None."""
    if not path.is_file():
        return f"{path} does not exist"
    problems = quick_check(path)
    if problems:
        return f"{path} is damaged: {problems[0]}"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        return f"{path} is not a SQLite database ({exc})"
    finally:
        conn.close()
    if "meta" not in tables or "tasks" not in tables:
        return f"{path} is not a ralph store"
    return None


def live_workers(store_path: Path) -> list[str]:
    """Names of workers with a fresh heartbeat in the store; [] when it cannot be read (a
    damaged store stops its workers too, and is exactly what a restore is for)."""
    from ralph.store.sqlite import SQLiteStore

    try:
        store = SQLiteStore(store_path, upgrade=False)
    except errors.RalphError:
        return []
    try:
        now = time.time()
        return [w.name for w in store.workers() if w.state(now) in ("idle", "busy")]
    except (errors.RalphError, sqlite3.DatabaseError):
        return []
    finally:
        store.close()


def restore(store_path: Path, source: Path) -> Path | None:
    """Put the copy `source` in place of the store; returns where the replaced store was kept.

    Refused while a worker of the store is live: its open connection would keep writing to
    the replaced file. The replaced file (with its WAL, byte for byte, damaged or not) goes to
    `backups/<stem>-replaced-<time>.db`.
    """
    store_path, source = Path(store_path), Path(source)
    why = _is_ralph_store(source)
    if why:
        raise errors.StoreError(f"cannot restore: {why}", hint="pick a file from ralph db backup")
    live = live_workers(store_path) if store_path.exists() else []
    if live:
        raise errors.StoreError(
            f"cannot restore while workers use the store: {', '.join(live)}",
            hint="stop the run first (Ctrl-C, or `ralph worker stop NAME`)",
        )
    folder = backups_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    kept = None
    if store_path.exists():
        kept = folder / f"{store_path.stem}-replaced-{_stamp()}.db"
        shutil.copyfile(store_path, kept)
        for suffix in ("-wal",):
            side = store_path.with_name(store_path.name + suffix)
            if side.exists():
                shutil.copyfile(side, kept.with_name(kept.name + suffix))
    fresh = store_path.with_name(store_path.name + ".restoring")
    _copy(source, fresh)
    for suffix in ("-wal", "-shm"):
        store_path.with_name(store_path.name + suffix).unlink(missing_ok=True)
    os.replace(fresh, store_path)
    return kept
