"""A user project in a temporary folder: a pipeline file and the modules it imports, edited between runs."""

from __future__ import annotations

import importlib
import linecache
import sys
import textwrap
from pathlib import Path
from typing import Any


class Project:
    """Writes files, then loads and runs ``flow.py:<pipeline>`` the way ``conveyor run`` does."""

    def __init__(self, root: Path, client: Any) -> None:
        self.root = root
        self.client = client

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / name
        text = path.read_text()
        assert old in text, f"{old!r} is not in {name}"
        path.write_text(text.replace(old, new))

    def forget(self) -> None:
        """Drop the project's modules so the next load reads the edited files, as a new process would."""
        root = str(self.root.resolve())
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if file.startswith(root):
                del sys.modules[name]
        linecache.clearcache()
        importlib.invalidate_caches()

    def run(self, pipeline: str = "pipe", **params: Any) -> Any:
        from conveyor.runtime.loader import load_pipeline

        self.forget()
        try:
            p = load_pipeline(f"{self.root / 'flow.py'}:{pipeline}")
            return self.client.run_pipeline(p, params)
        finally:
            self.forget()

    def hits(self, run: Any) -> dict[str, bool]:
        return {s.name: s.cache_hit for s in run.steps.values()}

    def reasons(self, run: Any) -> dict[str, str]:
        from conveyor.runtime.cache import miss_reasons

        return miss_reasons(self.client.metadata, run.id)
