"""``@pipeline``: a function whose body wires steps into a graph."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.dsl.building import building
from conveyor.dsl.graph import Graph
from conveyor.dsl.parameters import Parameter, declared_parameters, resolve_parameters
from conveyor.dsl.step import normalised_source_hash
from conveyor.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from conveyor.runtime.run import Run


class Pipeline:
    """A pipeline definition. ``build(**params)`` makes its graph; ``run(**params)`` executes it."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *,
                 on_success: Callable[[Any], Any] | None = None,
                 on_failure: Callable[[Any], Any] | None = None) -> None:
        for hook_name, hook in (("on_success", on_success), ("on_failure", on_failure)):
            if hook is not None and not callable(hook):
                raise PipelineDefinitionError(
                    f"Pipeline '{name or fn.__name__}': {hook_name} takes a function of one argument "
                    f"(the hook context), got {type(hook).__name__}.")
        self.fn = fn
        self.name = name or fn.__name__
        self.on_success = on_success
        self.on_failure = on_failure
        self.parameters: dict[str, Parameter] = declared_parameters(fn)
        self.ref: str | None = None   # "file.py:attr" or "module:attr", set by the loader
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PipelineDefinitionError(
            f"Pipeline '{self.name}' is not called directly. Use {self.name}.run(...) to execute it "
            f"or {self.name}.build(...) to inspect its graph."
        )

    def resolve(self, params: Mapping[str, Any] | None = None, *, from_text: bool = False) -> dict[str, Any]:
        """Check and complete parameters."""
        return resolve_parameters(self.name, self.parameters, params or {}, from_text=from_text)

    def build(self, **params: Any) -> Graph:
        """Build the graph for these parameters; runs no step."""
        values = self.resolve(params)
        with building(self.name) as ctx:
            result = self.fn(**values)
        if not ctx.nodes:
            raise PipelineDefinitionError(
                f"Pipeline '{self.name}' calls no step. Decorate the functions it calls with @cv.step."
            )
        return Graph.build(self.name, ctx.nodes, outputs=result)

    def code_hash(self, graph: Graph) -> str:
        """A version of the pipeline: its own code and that of every step in it."""
        h = hashlib.sha256(normalised_source_hash(self.fn).encode())
        for spec_hash in sorted({n.spec.code_hash for n in graph.nodes.values()}):
            h.update(spec_hash.encode())
        return h.hexdigest()

    def run(self, *, cache: bool = True, executor: str | None = None, run_name: str | None = None,
            tags: Mapping[str, str] | None = None, client: Any = None, **params: Any) -> Run:
        """Run the pipeline in this process and return the finished :class:`Run`."""
        from conveyor.runtime.client import Client

        client = client or Client()
        return client.run_pipeline(self, params, cache=cache, executor=executor, run_name=run_name, tags=tags)


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
             on_success: Callable[[Any], Any] | None = None, on_failure: Callable[[Any], Any] | None = None) -> Any:
    """Declare a pipeline; its typed signature is its parameters.

    ``on_success`` / ``on_failure`` are called with a :class:`~conveyor.runtime.hooks.HookContext`
    when a run of it ends (a hook that raises is logged and recorded, never changes the run's status).
    """
    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name, on_success=on_success, on_failure=on_failure)

    return wrap(fn) if fn is not None else wrap
