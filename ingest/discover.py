"""Expand the paths given to `ingest` into document files, reporting what cannot be used.

Inside a folder given to `ingest`, symbolic links are followed only while they stay inside
that folder: a link to a file or folder elsewhere is reported and not followed (so a link to
``/`` cannot make ingest walk the whole disk). Files and folders named directly are allowed.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from kbqa.ingest.loaders import supported_extensions


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): failures
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not documents


def discover(paths: list[str | Path]) -> Discovery:
    found = Discovery()
    seen: set[Path] = set()
    exts = set(supported_extensions())
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            reason = "broken symbolic link or symlink loop" if path.is_symlink() else "no such file or directory"
            found.problems.append((str(raw), reason))
            continue
        if path.is_file():
            _add(found, seen, path, None)
            continue
        if not path.is_dir():
            found.problems.append((str(raw), "not a regular file or directory"))
            continue
        before = len(found.files)
        base = path.resolve()
        visited: set[tuple[int, int]] = set()
        for root, dirs, names in os.walk(path, followlinks=True):
            if not Path(root).resolve().is_relative_to(base):
                found.skipped.append((root, f"symlinked directory outside the ingested folder ({Path(root).resolve()}); not followed"))
                dirs[:] = []
                continue
            st = os.stat(root)
            if (st.st_dev, st.st_ino) in visited:  # a symlink loop
                found.skipped.append((root, "directory already visited (symlink loop)"))
                dirs[:] = []
                continue
            visited.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                file = Path(root) / name
                if file.suffix.lower() in exts:
                    _add(found, seen, file, base)
                else:
                    found.skipped.append((str(file), f"unsupported file type {file.suffix or '(no extension)'!r}"))
        if len(found.files) == before:
            found.problems.append((str(raw), f"no supported documents in this directory ({', '.join(sorted(exts))})"))
    return found


def _add(found: Discovery, seen: set[Path], path: Path, base: Path | None) -> None:
    """Add `path` once (by its resolved path); inside a folder `base`, only if it resolves inside it."""
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError:  # Python's own symlink-loop error
        found.problems.append((str(path), "symlink loop (too many levels of symbolic links)"))
        return
    except OSError as exc:
        reason = "symlink loop (too many levels of symbolic links)" if exc.errno == errno.ELOOP else f"cannot resolve path: {exc}"
        found.problems.append((str(path), reason))
        return
    if base is not None and not resolved.is_relative_to(base):
        found.problems.append((str(path), f"symlink points outside the ingested folder ({resolved}); not followed"))
        return
    if resolved not in seen:
        seen.add(resolved)
        found.files.append(path)
