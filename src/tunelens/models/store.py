"""The local model store: the cache folder, and builds into it that are safe when several
processes want the same directory at once (locked, written aside, renamed into place)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

COMPLETE_MARKER = ".tunelens-complete"  # written last, before the rename into place


def cache_dir() -> Path:
    """``$TUNELENS_CACHE`` or ``~/.cache/tunelens``."""
    root = os.environ.get("TUNELENS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tunelens")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_complete_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / COMPLETE_MARKER).is_file()


def _lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.lock"


def _remove_leftovers(out_dir: Path) -> None:
    """Remove what interrupted builds of ``out_dir`` left behind. Only called under the build lock,
    so no live build owns any of these."""
    import shutil

    parent = out_dir.parent
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*", f"{out_dir.name}.tmp"):
        for leftover in parent.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _unique_sibling(out_dir: Path, kind: str) -> Path:
    import uuid

    return out_dir.with_name(f".{out_dir.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def build_atomically(
    out_dir: str | Path,
    build: Callable[[Path], None],
    *,
    is_complete: Callable[[Path], bool] = is_complete_checkpoint,
    force: bool = False,
    what: str | None = None,
    progress: bool = False,
) -> Path:
    """Build a cache directory safely when several processes want it at once.

    Under a file lock beside ``out_dir``: unless ``force``, a complete ``out_dir`` (another process
    built it while we waited) is returned as is; otherwise leftovers of interrupted builds are
    removed, ``build(tmp)`` writes into a fresh, uniquely named sibling directory, a completion
    marker is added, and the directory is renamed into place (an incomplete ``out_dir`` is moved
    aside first). Readers therefore see either no directory or a complete one; a build that fails
    or is interrupted leaves at most a temporary directory, which the next build removes.
    """
    import shutil

    from filelock import FileLock, Timeout

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(_lock_path(out_dir)))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        if progress:
            from rich.console import Console

            Console(stderr=True).print(f"[cyan]waiting for another process to finish building {what or out_dir}[/]")
        lock.acquire()
    try:
        if not force and is_complete(out_dir):
            return out_dir
        _remove_leftovers(out_dir)
        tmp = _unique_sibling(out_dir, "tmp")
        tmp.mkdir()
        try:
            build(tmp)
            (tmp / COMPLETE_MARKER).write_text("ok", encoding="utf-8")
            old = None
            if out_dir.exists() or out_dir.is_symlink():
                old = _unique_sibling(out_dir, "old")
                out_dir.rename(old)
            tmp.rename(out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        return out_dir
    finally:
        lock.release()


DEFAULT_DERIVED_CACHE_GB = 6.0
RECENT_USE_S = 3600.0  # an entry used within the hour is never evicted (another process may be about to open it)


def derived_cache_budget() -> float | None:
    """Bytes the derived-model caches (GGUF exports, merged checkpoints) may each hold:
    ``$TUNELENS_DERIVED_CACHE_GB`` (default 6), or None for no bound (``none`` / ``unlimited``)."""
    raw = os.environ.get("TUNELENS_DERIVED_CACHE_GB", "").strip().lower()
    if raw in ("none", "unlimited", "inf"):
        return None
    try:
        gb = float(raw) if raw else DEFAULT_DERIVED_CACHE_GB
    except ValueError:
        from tunelens.errors import TunelensError

        raise TunelensError(f"TUNELENS_DERIVED_CACHE_GB={raw!r}: give a size in GB (e.g. 6) or 'none' for no bound") from None
    if gb < 0:
        from tunelens.errors import TunelensError

        raise TunelensError(f"TUNELENS_DERIVED_CACHE_GB={raw!r}: the size must not be negative")
    return gb * 1e9


def mark_used(entry: Path) -> None:
    """Record that a cache entry was just used (its folder's time): the order ``evict_lru`` follows."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache: the entry keeps its build time as its last use, so it may go sooner
        return


def _tree_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:  # removed while we count (another process evicting it): it holds nothing now
            continue
    return total


def evict_lru(folder: Path, budget: float | None, *, keep: Path | None = None, now: float | None = None,
              recent_s: float = RECENT_USE_S) -> list[tuple[Path, int]]:
    """Remove the least recently used complete entries of a derived-model cache ``folder`` (one
    directory per entry, each built by ``build_atomically``) until it holds at most ``budget`` bytes.

    Every run exports its tuned model (an f16 GGUF of SmolLM2-135M is 270 MB) under a new content
    digest, so without a bound the cache only grows. ``keep`` (the entry in use) and entries used
    within ``recent_s`` are never removed, nor one whose build lock another process holds; the
    cache may therefore stay over budget. Returns the (entry, bytes) removed."""
    import shutil
    import time

    from filelock import FileLock, Timeout

    if budget is None or not folder.is_dir():
        return []
    now = time.time() if now is None else now
    entries = []
    for d in folder.iterdir():
        if d.is_dir() and not d.is_symlink() and not d.name.startswith("."):
            try:
                entries.append((d.stat().st_mtime, d, _tree_bytes(d)))
            except OSError:
                continue
    total = sum(size for _, _, size in entries)
    removed: list[tuple[Path, int]] = []
    for used, d, size in sorted(entries, key=lambda e: e[0]):
        if total <= budget:
            break
        if (keep is not None and d.resolve() == Path(keep).resolve()) or now - used < recent_s:
            continue
        lock = FileLock(str(_lock_path(d)))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            lock.release()  # the lock file stays: removing it would race with a process opening it
        total -= size
        removed.append((d, size))
    return removed
