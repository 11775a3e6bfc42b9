"""Names for the elements of a fanned-out step, and the ``after=`` ordering of step calls.

``train.map(C=[0.1, 1.0], name_by=lambda c: f"C={c}")`` runs ``train[C=0.1]`` and ``train[C=1.0]``
instead of ``train[0]`` and ``train[1]``; the element's index is kept next to its name.
``train.map(C=[...], max_parallel=2)`` runs at most two elements at once, on any executor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.dsl.handles import Output, Outputs
from conveyor.errors import PipelineDefinitionError

NameBy = Callable[[Any], Any] | str
LABEL = re.compile(r"^[A-Za-z0-9_.,:=+@%-]{1,64}$")


def check_name_by(step: str, name_by: Any, mapped: Sequence[str]) -> None:
    """Refuse a ``name_by`` that is neither a callable nor a key (checked when the pipeline is built)."""
    if name_by is None or callable(name_by) or (isinstance(name_by, str) and name_by):
        return
    raise PipelineDefinitionError(
        f"{step}.map(name_by={name_by!r}): name_by takes a function of the element "
        f"(e.g. name_by=lambda item: item['name']) or a key of it (e.g. name_by='name'). "
        f"Mapped keywords: {', '.join(mapped)}."
    )


def check_max_parallel(step: str, max_parallel: Any) -> int | None:
    """The concurrency limit of a mapped call: None (no limit) or a whole number of at least 1."""
    if max_parallel is None:
        return None
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise PipelineDefinitionError(
            f"{step}.map(max_parallel={max_parallel!r}): max_parallel is how many elements may run at once, "
            "a whole number of 1 or more (e.g. max_parallel=4). Leave it out to run every element as soon as "
            "the executor has room."
        )
    return max_parallel


def _label_of(step: str, name_by: NameBy, element: Any, index: int) -> str:
    try:
        if callable(name_by):
            raw = name_by(element)
        elif isinstance(element, Mapping) and name_by in element:
            raw = element[name_by]
        elif hasattr(element, name_by):
            raw = getattr(element, name_by)
        else:
            raise KeyError(name_by)
    except Exception as exc:
        raise PipelineDefinitionError(
            f"{step}.map(name_by=...) failed on element {index} ({element!r:.80}): {type(exc).__name__}: {exc}. "
            "name_by gets the element (a dict of the mapped keywords when several are mapped) and returns its name."
        ) from None
    label = str(raw)
    if not LABEL.match(label):
        raise PipelineDefinitionError(
            f"{step}.map(name_by=...) named element {index} {label!r:.80}; element names are 1 to 64 "
            "letters, digits or _ . , : = + @ % - (no spaces or brackets). Return a shorter or simpler name."
        )
    return label


def element_labels(step: str, name_by: NameBy | None, mapped: Mapping[str, Sequence[Any]]) -> list[str] | None:
    """The element names of a mapped call, or None without ``name_by``.

    ``mapped`` holds each mapped keyword's values. With one mapped keyword ``name_by`` gets the
    value itself; with several, a dict ``{keyword: value}``. A string ``name_by`` naming a mapped
    keyword takes that keyword's value. Names must be unique.
    """
    if name_by is None:
        return None
    keys = list(mapped)
    n = len(mapped[keys[0]]) if keys else 0
    labels = []
    for i in range(n):
        if isinstance(name_by, str) and name_by in mapped:
            element: Any = mapped[name_by][i]
            labels.append(_label_of(step, lambda v: v, element, i))
            continue
        element = mapped[keys[0]][i] if len(keys) == 1 else {k: mapped[k][i] for k in keys}
        labels.append(_label_of(step, name_by, element, i))
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise PipelineDefinitionError(
                f"{step}.map(name_by=...) gave the name {label!r} to elements {seen[label]} and {i}; "
                "element names must be unique. Include something that tells them apart (e.g. the index)."
            )
        seen[label] = i
    return labels


def after_nodes(step: str, after: Any) -> tuple[str, ...]:
    """The node names an ``after=`` argument waits for: step outputs, one or a list of them."""
    if after is None:
        return ()
    items = list(after) if isinstance(after, list | tuple) and not isinstance(after, Outputs) else [after]
    names: list[str] = []
    for item in items:
        if isinstance(item, Outputs):
            item = item[0]
        if not isinstance(item, Output):
            raise PipelineDefinitionError(
                f"Step '{step}': after= takes outputs of earlier step calls (e.g. after=[trained]), "
                f"got {type(item).__name__} {item!r:.80}."
            )
        if item._ref.node not in names:
            names.append(item._ref.node)
    return tuple(names)
