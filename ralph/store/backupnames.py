"""Where a SQLite store's copies live and what to tell a user whose store is damaged: the
part of backup.py the store itself needs (backup.py opens stores, so it cannot be imported
by them)."""

from __future__ import annotations

from pathlib import Path

DIR_NAME = "backups"


def backups_dir(store_path: Path) -> Path:
    """`.ralph/backups/` for the default store: the folder next to the store file."""
    return Path(store_path).parent / DIR_NAME


def backups(store_path: Path) -> list[Path]:
    """The store's copies, oldest first (copies of replaced stores are not listed)."""
    folder = backups_dir(store_path)
    stem = Path(store_path).stem
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{stem}-2*.db") if p.is_file())


def newest(store_path: Path) -> Path | None:
    found = backups(store_path)
    return found[-1] if found else None


def restore_hint(store_path: Path) -> str:
    """What the 'malformed' and 'corrupted' errors tell the user to do."""
    last = newest(store_path)
    if last is None:
        return (
            f"no backup in {backups_dir(store_path)}: point --db or RALPH_DB at another "
            "database file, or move this one away to start a new store"
        )
    return f"restore the newest backup: ralph db restore {last}"
