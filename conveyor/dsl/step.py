"""``@step``: a typed Python function the engine can cache, retry and run anywhere."""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from conveyor.dsl.building import current_build
from conveyor.dsl.fanout import after_nodes, check_max_parallel, check_name_by, element_labels
from conveyor.dsl.graph import Const, Expr, ListOf, Node
from conveyor.dsl.handles import MapOutput, Output, Outputs
from conveyor.dsl.resources import parse_memory
from conveyor.errors import PipelineDefinitionError

DEFAULT_OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class StepSpec:
    """Everything declared about a step; the function itself is ``fn``."""

    name: str
    fn: Callable[..., Any]
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 0.5
    backoff_max: float = 30.0
    cache: bool = True
    timeout: float | None = None
    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    resources: tuple[tuple[str, float], ...] = ()   # custom resources by name (a Ray cluster's labels)
    tags: tuple[str, ...] = ()
    outputs: tuple[str, ...] = (DEFAULT_OUTPUT,)
    code_hash: str = ""
    module: str = ""
    qualname: str = ""
    source_file: str | None = None
    parameters: tuple[str, ...] = field(default=())
    cache_version: str = ""
    cache_files: tuple[str, ...] = ()
    cache_key: Callable[..., Any] | None = None
    on_success: Callable[[Any], Any] | None = None   # called with a HookContext after the step succeeds
    on_failure: Callable[[Any], Any] | None = None   # called with a HookContext after its last attempt fails
    preemptible: bool = False   # may run on capacity that is taken back (spot): exports may schedule it there

    @property
    def multiple_outputs(self) -> bool:
        return self.outputs != (DEFAULT_OUTPUT,)

    @property
    def requests(self) -> dict[str, Any]:
        """What the step asks of the machine running it: ``cpus``, ``memory``, ``gpus`` and custom resources."""
        declared = {"cpus": self.cpus, "memory": self.memory, "gpus": self.gpus}
        return {**{k: v for k, v in declared.items() if v is not None}, **dict(self.resources)}

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff before attempt ``attempt + 1`` (attempt counts from 1)."""
        return min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))


def normalised_source(tree: ast.AST) -> str:
    """A canonical text of parsed code: no comments, docstrings, decorators or formatting.

    The top-level function's name is dropped too (a step's name enters the cache key on its own);
    the result is what cache keys hash, so two spellings of the same code give the same text.
    """
    tree = copy.deepcopy(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node in getattr(tree, "body", ())[:1]:
            node.decorator_list = []
            node.name = "_"
    return ast.dump(tree, annotate_fields=False)


def normalised_source_hash(fn: Callable[..., Any]) -> str:
    """Hash the function's own code, ignoring decorators, comments, docstrings and formatting."""
    try:
        text = normalised_source(ast.parse(textwrap.dedent(inspect.getsource(fn))))
    except (OSError, TypeError, SyntaxError, IndexError):
        code = getattr(fn, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code else repr(fn)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Unmapped:
    """Marks a ``step.map`` keyword that every call receives whole."""

    value: Any


def unmapped(value: Any) -> Unmapped:
    """Pass ``value`` whole to every call of a mapped step: ``train.map(C=[..], df=cv.unmapped(df))``."""
    return Unmapped(value)


class Step:
    """A step: call it inside a pipeline to add a node; call it elsewhere to run the function."""

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self._signature = inspect.signature(spec.fn)
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"<step {self.spec.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_build()
        if ctx is None:
            return self.spec.fn(*args, **kwargs)
        after = self._reserved(kwargs, "after")
        inputs = self._bind(args, kwargs)
        node = Node(name=ctx.node_name(self.spec.name), spec=self.spec, inputs=inputs,
                    conditions=tuple(ctx.conditions), after=after_nodes(self.spec.name, after))
        ctx.add(node)
        return self._handles(node.name)

    def _reserved(self, kwargs: dict[str, Any], key: str) -> Any:
        """Take a call option (``after``, ``name_by``, ``max_parallel``) out of the arguments, unless the function has that input."""
        if key in self._signature.parameters:
            return None
        return kwargs.pop(key, None)

    def map(self, *args: Any, **kwargs: Any) -> MapOutput:
        """Fan out: run the step once per element of the list-valued keyword arguments.

        The mapped keywords take a Python list or an upstream output that is a list; several mapped
        keywords are zipped and must have equal lengths. Other arguments are passed whole to each
        call. Returns one handle whose value is the list of outputs, in order.

        ``name_by`` names each element instead of ``[0]``, ``[1]``: a function of the element (the
        value of the mapped keyword, or a dict of them when several are mapped) or a key of it.
        ``after`` waits for other step calls without taking their data. ``max_parallel`` caps how
        many elements run at once (the engine holds the others back, on every executor), e.g. for
        a rate-limited service or a licence count; without it every element starts when it can.
        """
        ctx = current_build()
        if ctx is None:
            raise PipelineDefinitionError(f"{self.spec.name}.map(...) works only inside a @cv.pipeline function.")
        after = self._reserved(kwargs, "after")
        name_by = self._reserved(kwargs, "name_by")
        max_parallel = check_max_parallel(self.spec.name, self._reserved(kwargs, "max_parallel"))
        if self.spec.multiple_outputs:
            raise PipelineDefinitionError(
                f"Step '{self.spec.name}' has several outputs and cannot be mapped; return one value (a dict) instead."
            )
        plain = {k: v.value if isinstance(v, Unmapped) else v for k, v in kwargs.items()}
        mapped = tuple(k for k, v in kwargs.items() if not isinstance(v, Unmapped))
        if not mapped:
            raise PipelineDefinitionError(
                f"{self.spec.name}.map(...) needs at least one keyword argument holding a list, "
                f"e.g. {self.spec.name}.map({next(iter(self._signature.parameters), 'x')}=[1, 2, 3])."
            )
        for k in mapped:
            v = kwargs[k]
            if isinstance(v, list | tuple) and any(isinstance(i, Output) for i in v):
                raise PipelineDefinitionError(
                    f"{self.spec.name}.map({k}=[...]): a list of step outputs cannot be mapped over; "
                    "return the list from one step and map over that output instead."
                )
            if not isinstance(v, list | tuple | Output):
                raise PipelineDefinitionError(
                    f"{self.spec.name}.map({k}={v!r}): mapped keywords take a list or a step output holding "
                    f"a list. To pass the same value to every call, write {k}=cv.unmapped(...) "
                    "or pass it positionally."
                )
        inputs = self._bind(args, plain)
        for k in mapped:
            if isinstance(kwargs[k], list | tuple):
                inputs[k] = Const(list(kwargs[k]))
        check_name_by(self.spec.name, name_by, mapped)
        if all(isinstance(inputs[k], Const) for k in mapped):   # names known now: refuse bad ones at build time
            element_labels(self.spec.name, name_by, {k: inputs[k].value for k in mapped})  # type: ignore[union-attr]
        node = Node(name=ctx.node_name(self.spec.name), spec=self.spec, inputs=inputs,
                    conditions=tuple(ctx.conditions), map_over=mapped, after=after_nodes(self.spec.name, after),
                    name_by=name_by, max_parallel=max_parallel)
        ctx.add(node)
        from conveyor.dsl.graph import Ref

        return MapOutput(Ref(node.name, DEFAULT_OUTPUT))

    # --- build-time checks --------------------------------------------------------------------

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Expr]:
        params = list(self._signature.parameters)
        for key in kwargs:
            if key not in self._signature.parameters:
                hint = difflib.get_close_matches(key, params, n=1) or [p for p in params if p.lower() == key.lower()]
                raise PipelineDefinitionError(
                    f"Step '{self.spec.name}' has no input named '{key}'. "
                    f"Its inputs are: {', '.join(params) or '(none)'}."
                    + (f" Did you mean '{hint[0]}'?" if hint else "")
                )
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"Step '{self.spec.name}' was called with the wrong arguments: {exc}. "
                f"Its signature is {self.spec.name}{self._signature}."
            ) from None
        bound.apply_defaults()
        return {name: to_expr(self.spec.name, name, value) for name, value in bound.arguments.items()}

    def _handles(self, node: str) -> Any:
        from conveyor.dsl.graph import Ref

        if self.spec.multiple_outputs:
            return Outputs(node, self.spec.outputs)
        return Output(Ref(node, DEFAULT_OUTPUT))


def to_expr(step: str, name: str, value: Any) -> Expr:
    """Turn an argument into an input expression."""
    if isinstance(value, Output):
        return value._ref
    if isinstance(value, Outputs):
        raise PipelineDefinitionError(
            f"Step '{step}', input '{name}': got all outputs of a multi-output step. "
            "Unpack them (`a, b = split(df)`) and pass one."
        )
    if isinstance(value, list | tuple) and any(isinstance(v, Output | Outputs) for v in value):
        return ListOf(tuple(to_expr(step, name, v) for v in value))
    if callable(value) and isinstance(value, Step):
        raise PipelineDefinitionError(
            f"Step '{step}', input '{name}': got the step '{value.name}' itself; call it to use its output."
        )
    return Const(value)


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(*, name: str | None = ..., retries: int = ..., retry_on: Sequence[type[BaseException]] | type[BaseException] = ...,
         backoff: float = ..., cache: bool = ..., timeout: float | None = ..., cpus: float | None = ...,
         memory: str | None = ..., gpus: int | None = ..., resources: Mapping[str, float] | None = ...,
         tags: Sequence[str] = ..., outputs: Sequence[str] | None = ..., cache_version: str | int = ..., cache_files: Sequence[str] = ...,
         cache_key: Callable[..., Any] | None = ..., on_success: Callable[[Any], Any] | None = ...,
         on_failure: Callable[[Any], Any] | None = ...,
         preemptible: bool = ...) -> Callable[[Callable[..., Any]], Step]: ...


def step(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, retries: int = 0,
         retry_on: Sequence[type[BaseException]] | type[BaseException] = (Exception,), backoff: float = 0.5,
         cache: bool = True, timeout: float | None = None, cpus: float | None = None,
         memory: str | None = None, gpus: int | None = None, resources: Mapping[str, float] | None = None,
         tags: Sequence[str] = (), outputs: Sequence[str] | None = None, cache_version: str | int = "", cache_files: Sequence[str] = (),
         cache_key: Callable[..., Any] | None = None, on_success: Callable[[Any], Any] | None = None,
         on_failure: Callable[[Any], Any] | None = None, preemptible: bool = False) -> Any:
    """Declare a step.

    ``retries`` extra attempts with exponential backoff (``backoff`` seconds, doubling) for
    exceptions in ``retry_on``; ``cache`` reuses outputs of an identical earlier call
    (``cache=False``: never, for steps with side effects); what the cache cannot see can be
    declared: ``cache_version`` (bump it to invalidate), ``cache_files`` (glob patterns, relative
    to the file defining the step, whose contents enter the key) and ``cache_key`` (a callable
    taking the step's arguments and returning a JSON-able fingerprint of the outside world the
    step reads, e.g. a file's hash or a time window's resolved bounds);
    ``timeout`` seconds per attempt; ``cpus``/``memory``/``gpus`` are hints for executors and
    exports, and ``resources`` adds custom resources by name (``{"second_node": 1}``: what a Ray
    cluster schedules on; the keys ``cpus``, ``memory`` and ``gpus`` may be given there too); ``outputs`` names several outputs (the function returns a tuple or a dict).
    ``on_success`` / ``on_failure`` are called with a :class:`~conveyor.runtime.hooks.HookContext`
    when the step succeeds or fails for good (a hook that raises is logged, never fails the run).
    ``preemptible=True`` says the step may run on capacity that is taken back (spot instances):
    it saves its progress with ``cv.checkpoint`` and continues with ``cv.restore``, so exports may
    schedule it there. Any step whose worker gets SIGTERM is given a grace period and ends
    ``preempted`` (docs/resources.md); preempted attempts are retried apart from ``retries``.
    """
    def wrap(f: Callable[..., Any]) -> Step:
        if not callable(f) or isinstance(f, Step):
            raise PipelineDefinitionError(f"@step needs a function, got {f!r}.")
        if retries < 0:
            raise PipelineDefinitionError(f"Step '{f.__name__}': retries must be >= 0, got {retries}.")
        if not isinstance(preemptible, bool):
            raise PipelineDefinitionError(
                f"Step '{f.__name__}': preemptible takes True or False, got {type(preemptible).__name__} "
                f"{preemptible!r:.60}.")
        if timeout is not None and timeout <= 0:
            raise PipelineDefinitionError(f"Step '{f.__name__}': timeout must be positive seconds, got {timeout}.")
        kinds = retry_on if isinstance(retry_on, Sequence) else (retry_on,)
        for k in kinds:
            if not (isinstance(k, type) and issubclass(k, BaseException)):
                raise PipelineDefinitionError(f"Step '{f.__name__}': retry_on takes exception classes, got {k!r}.")
        if cache_key is not None and not callable(cache_key):
            raise PipelineDefinitionError(
                f"Step '{f.__name__}': cache_key takes a function of the step's arguments returning a JSON-able "
                f"fingerprint, got {cache_key!r}.")
        files = (cache_files,) if isinstance(cache_files, str) else tuple(cache_files)
        if not all(isinstance(g, str) and g for g in files):
            raise PipelineDefinitionError(
                f"Step '{f.__name__}': cache_files takes glob patterns such as ['data/*.csv'], got {cache_files!r}.")
        for hook_name, hook in (("on_success", on_success), ("on_failure", on_failure)):
            if hook is not None and not callable(hook):
                raise PipelineDefinitionError(
                    f"Step '{f.__name__}': {hook_name} takes a function of one argument (the hook context), "
                    f"got {type(hook).__name__} {hook!r:.60}.")
        cpus_, memory_, gpus_, custom = _split_resources(f.__name__, resources, cpus, memory, gpus)
        outs = tuple(outputs) if outputs else (DEFAULT_OUTPUT,)
        if len(set(outs)) != len(outs):
            raise PipelineDefinitionError(f"Step '{f.__name__}': output names repeat: {outs}.")
        try:
            source_file = inspect.getfile(f)
        except TypeError:
            source_file = None
        spec = StepSpec(
            name=name or f.__name__, fn=f, retries=retries, retry_on=tuple(kinds), backoff=backoff,
            cache=cache, timeout=timeout, cpus=cpus_, memory=memory_, gpus=gpus_, resources=custom, tags=tuple(tags),
            outputs=outs, code_hash=normalised_source_hash(f), module=f.__module__,
            qualname=f.__qualname__, source_file=source_file,
            parameters=tuple(inspect.signature(f).parameters), cache_version=str(cache_version),
            cache_files=files, cache_key=cache_key, on_success=on_success, on_failure=on_failure,
            preemptible=preemptible,
        )
        return Step(spec)

    return wrap(fn) if fn is not None else wrap


def _split_resources(step_name: str, resources: Mapping[str, float] | None, cpus: float | None,
                     memory: str | None, gpus: int | None) -> tuple[Any, Any, Any, tuple[tuple[str, float], ...]]:
    """Fold ``resources`` into (cpus, memory, gpus, custom resources), refusing a name given twice."""
    given: dict[str, Any] = {"cpus": cpus, "memory": memory, "gpus": gpus}
    custom: list[tuple[str, float]] = []
    if resources is not None and not isinstance(resources, Mapping):
        raise PipelineDefinitionError(f"Step '{step_name}': resources takes a dict of name -> amount such as "
                                      f"{{'gpus': 1, 'second_node': 1}}, got {type(resources).__name__}.")
    for name, amount in (resources or {}).items():
        if name in given:
            if given[name] is not None:
                raise PipelineDefinitionError(f"Step '{step_name}': {name} is given both as a keyword and in "
                                              "resources; give it once.")
            given[name] = amount
            continue
        if not isinstance(name, str) or not name or name in ("CPU", "GPU", "memory", "num_cpus", "num_gpus"):
            raise PipelineDefinitionError(f"Step '{step_name}': resource name {name!r} is not a custom resource "
                                          "name; use cpus, memory or gpus for those.")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            raise PipelineDefinitionError(f"Step '{step_name}': resource {name!r} needs a positive amount, "
                                          f"got {amount!r}.")
        custom.append((name, float(amount)))
    for name in ("cpus", "gpus"):
        value = given[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise PipelineDefinitionError(f"Step '{step_name}': {name} needs a number of 0 or more, got {value!r}.")
    if given["memory"] is not None:
        parse_memory(given["memory"], step_name)   # a size nothing could read fails here, not at run time
    return given["cpus"], given["memory"], given["gpus"], tuple(sorted(custom))
