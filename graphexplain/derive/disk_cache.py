"""What sympy produced, kept on disk between runs (Note [the derivation
cache on disk]), so that a learner re-running a script does not wait for
sympy to derive, simplify and print the same formulas again.

Entries are text only: sympy's printed formulas and expressions, the numpy
source code lambdify generated. Never a number of torch's: what the cache
keeps is a function of the rule table and sympy alone. This module imports
no sympy (derive/cache.py turns expressions into text and back).

    >>> entry = _path(Path("cache"), "leaf-formula", "Symbol('x')")
    >>> entry.parent.parent.name, entry.suffix
    ('cache', '.json')
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

ENV = "GRAPHEXPLAIN_CACHE"  # a folder; "off" for no cache
OFF = "off"
DEFAULT = Path("~") / ".cache" / "graphexplain"

# Note [the derivation cache on disk]
# One small JSON file per entry, under $GRAPHEXPLAIN_CACHE (by default
# ~/.cache/graphexplain), named by a hash of what the entry depends on: the
# kind of entry, its key (the row's declaration, the input, the mode; or the
# whole expression sympy was given) and the versions of graphexplain and
# sympy. The file repeats all of that, and is used only when it matches, so a
# changed row, a new sympy, a collision of hashes, a file cut short by a full
# disk or another program's file are never reused: they are ignored and
# written again. Writes go to a temporary file renamed into place, so two
# runs at once each find a whole entry or none. A folder that cannot be
# written means no cache, never an error: the run derives as without one.

_switched_off = False  # `graphexplain trace --no-cache`
_unwritable = False  # a write failed once: not tried again this run
_versions: Optional[str] = None


def switch_off() -> None:
    """No cache for the rest of this process (--no-cache)."""
    global _switched_off
    _switched_off = True


def folder() -> Optional[Path]:
    """Where entries live, or None for no cache."""
    if _switched_off:
        return None
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() == OFF:
        return None
    return Path(setting or DEFAULT).expanduser()


def versions() -> str:
    """What every entry is keyed with beyond its own key."""
    global _versions
    if _versions is None:
        from .. import __version__

        sympy = sys.modules.get("sympy")
        if sympy is None:  # not imported yet: ask it without importing it
            from importlib.metadata import version

            sympy_version = version("sympy")
        else:
            sympy_version = sympy.__version__
        _versions = f"graphexplain {__version__}; sympy {sympy_version}"
    return _versions


def _path(where: Path, kind: str, key: str) -> Path:
    digest = hashlib.sha256("\0".join((versions(), kind, key)).encode("utf-8")).hexdigest()
    return where / digest[:2] / f"{digest[2:34]}.json"


def load(kind: str, key: str) -> Optional[str]:
    """The stored text for (kind, key), or None where there is none usable."""
    where = folder()
    if where is None:
        return None
    try:
        with open(_path(where, kind, key), encoding="utf-8") as handle:
            entry = json.load(handle)
    except (OSError, ValueError):  # missing, unreadable, cut short, not JSON
        return None
    if not isinstance(entry, dict) or entry.get("versions") != versions() or entry.get("kind") != kind \
            or entry.get("key") != key or not isinstance(entry.get("value"), str):
        return None  # another version's, another key's, or not ours
    return entry["value"]


def store(kind: str, key: str, value: str) -> None:
    """Keep `value` for (kind, key); silently nothing where it cannot be written."""
    global _unwritable
    where = folder()
    if where is None or _unwritable:
        return
    path = _path(where, kind, key)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"versions": versions(), "kind": kind, "key": key, "value": value}, handle,
                      ensure_ascii=False)
        os.replace(temporary, path)
    except OSError:
        _unwritable = True
        try:
            os.unlink(temporary)
        except OSError:
            pass


def remember(kind: str, key: str, compute: Callable[[], str]) -> str:
    """The stored text for (kind, key), else `compute()`, stored."""
    found = load(kind, key)
    if found is not None:
        return found
    value = compute()
    store(kind, key, value)
    return value
