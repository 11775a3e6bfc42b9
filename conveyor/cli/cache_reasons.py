"""Why steps missed the cache: the lines ``--explain-cache`` prints and the field ``--json`` carries."""

from __future__ import annotations

from typing import Any


def miss_reasons(client: Any, run_id: str) -> dict[str, str]:
    """Node name -> why it ran instead of reusing a cached result."""
    from conveyor.runtime.cache import miss_reasons as reasons

    return reasons(client.metadata, run_id)


def annotate(data: dict[str, Any], client: Any, run_id: str) -> dict[str, Any]:
    """Add ``cache_miss`` (the reason, or null for steps that hit or did not run) to each step of a run's JSON."""
    reasons = miss_reasons(client, run_id)
    for s in data.get("steps", []):
        s["cache_miss"] = reasons.get(s["name"])
    return data


def print_reasons(c: Any, client: Any, run_id: str) -> None:
    """Print one line per step that ran: its name and why the cache did not serve it."""
    reasons = miss_reasons(client, run_id)
    if not reasons:
        c.print("Cache: every step that ran was served from the cache.")
        return
    c.print("[bold]Why steps ran instead of hitting the cache[/]")
    for name, reason in reasons.items():
        c.print(f"  {name}: {reason}", highlight=False, markup=False)
