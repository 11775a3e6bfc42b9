"""What counts as the user's own code: files outside the Python installation and outside Conveyor.

The cache key follows the user's code only; installed packages and the stdlib are covered by the
package versions each run's environment records.
"""

from __future__ import annotations

import functools
import site
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

_CONVEYOR_DIR = Path(__file__).resolve().parents[1]


@functools.cache
def _installation_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(str(Path(p).resolve()))
    for p in [*getattr(site, "getsitepackages", lambda: [])(), site.getusersitepackages()]:
        roots.add(str(Path(p).resolve()))
    roots.add(str(_CONVEYOR_DIR))
    return tuple(sorted(roots))


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str | None) -> bool:
    """True when ``filename`` is part of the user's project (not the stdlib, an installed package or Conveyor)."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    if {"site-packages", "dist-packages"} & set(path.parts):
        return False
    text = str(path)
    return not any(text == root or text.startswith(root + "/") for root in _installation_roots())


def module_is_user(module: types.ModuleType | None) -> bool:
    """True for a module of the user's project (or the script being run as ``__main__``)."""
    if module is None:
        return False
    if module.__name__ == "__main__":
        return True
    return is_user_file(getattr(module, "__file__", None))


def is_user_function(fn: types.FunctionType) -> bool:
    """True for a function defined in the user's project."""
    filename = fn.__code__.co_filename
    if filename.startswith("<"):   # exec'd or interactive code: decide by the module it lives in
        return module_is_user(sys.modules.get(fn.__module__ or ""))
    return is_user_file(filename)


def is_user_class(cls: type) -> bool:
    """True for a class defined in the user's project."""
    return module_is_user(sys.modules.get(cls.__module__))


def module_label(name: str) -> str:
    """The module's name as the user knows it."""
    # files loaded by `conveyor run FILE.py:p` get a synthetic module name; show the file's stem
    if name.startswith("conveyor_user_"):
        return name[len("conveyor_user_"):].rsplit("_", 1)[0]
    return name


def display_name(obj: Any) -> str:
    """``module.qualname`` of a function or class, as miss reasons print it (``helpers.clean``)."""
    module = getattr(obj, "__module__", None) or ""
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module_label(module)}.{qual}" if module else str(qual)
