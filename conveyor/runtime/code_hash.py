"""The code a step reaches: which of the user's functions, classes and constants its cache key covers.

The rule, applied at run time to the step's function object:

* start from the step's function; hash its normalised source (comments, docstrings, decorators
  and formatting ignored);
* for every name it uses, resolve the name the way Python will when the step runs: the
  function's closure cells, then its module globals (names imported inside the function body
  are resolved too); attribute chains on modules (``helpers.clean``, ``pkg.sub.CONST``) are
  followed through modules to the object they name; default arguments, the functions wrapped
  by decorators (``__wrapped__``, ``functools.partial``) and the classes named in annotations
  (also quoted ones) count as used; ``getattr(mod, "name")`` is ``mod.name``, ``getattr(mod, x)``
  uses all of ``mod``, and ``eval``/``exec``/``import_module`` of computed text are reported;
* an object that belongs to the user's own code is hashed and followed in turn: functions,
  classes (their whole source, so every method; their bases by name), module-level constants
  (canonical content of plain data, instances of the user's classes by their attributes, else a
  hash of their pickled state: pickles that differ between processes only cause misses), whole
  modules used as a value;
* the user's own code is every file that is not part of the Python installation (stdlib,
  ``site-packages``/``dist-packages``, the interpreter's prefixes) and not part of Conveyor.
  Everything else (numpy, scikit-learn, the stdlib) is covered by the package versions recorded
  in the run's environment and is not followed.

Each object is visited once, so mutual recursion terminates. What cannot be analysed is never
skipped silently: a function without source is hashed by its bytecode, a value that cannot be
fingerprinted is keyed by its type, and each such case is logged as a warning naming the step
and the object. The result is computed once per function object and kept, so the engine pays
the analysis once per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import logging
import pickle
import sys
import textwrap
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.dsl.step import normalised_source
from conveyor.runtime.code_refs import DYNAMIC, DYNAMIC_CALLS, IMPORT, IMPORT_MARKERS, references
from conveyor.runtime.user_code import (display_name, is_user_class, is_user_file, is_user_function, module_is_user,
                                        module_label)

log = logging.getLogger("conveyor.cache")

_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_COMPILED: dict[tuple[str, int, int], dict[tuple[str, int], list[types.CodeType]]] = {}


@dataclass(frozen=True, slots=True)
class CodeFingerprint:
    """The hashes of everything a step's function reaches, by a readable name (``helpers.clean``)."""

    parts: Mapping[str, str]
    warnings: tuple[str, ...] = ()
    digest: str = ""         # one hash over all parts (names and hashes); what the cache key sees

    @classmethod
    def of(cls, parts: Mapping[str, str], warnings: tuple[str, ...] = ()) -> CodeFingerprint:
        """Build a fingerprint, computing its digest once."""
        return cls(parts=parts, warnings=warnings, digest=digest_of(parts))


def digest_of(parts: Mapping[str, str]) -> str:
    """One hash over named code hashes."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return hashlib.sha256(text.encode()).hexdigest()


_MEMO: weakref.WeakKeyDictionary[Any, dict[str, CodeFingerprint]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def reached_code(fn: Callable[..., Any], *, step: str = "") -> CodeFingerprint:
    """The fingerprint of ``fn`` and the user's code it reaches (memoised per function object)."""
    try:
        hit = _MEMO.get(fn, {}).get(step)
    except TypeError:      # not weak-referenceable: analyse every time
        hit = None
    if hit is not None:
        return hit
    walker = _Walker(step or getattr(fn, "__name__", repr(fn)))
    # the step's own function is named after the step, so renaming the Python function is no change
    walker.root = f"{module_label(getattr(fn, '__module__', '') or '')}.{step}" if step else ""
    try:
        walker.visit(fn, display_name(fn))
    except RecursionError:
        # deeper than the interpreter's stack: never reuse a result rather than reuse a wrong one
        walker.warn("the code it reaches is nested too deeply to analyse, so the step is not cached in this "
                    "process")
        walker.parts["(not analysable)"] = uuid.uuid4().hex
    result = CodeFingerprint.of(dict(walker.parts), tuple(walker.warnings))
    for w in result.warnings:
        log.warning("%s", w)
    with _LOCK:
        try:
            _MEMO.setdefault(fn, {})[step] = result
        except TypeError:
            pass
    return result


# --- the walk -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Walker:
    step: str
    parts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seen: dict[int, Any] = field(default_factory=dict)   # id -> object, kept alive so ids stay unique
    root: str = ""
    valued: set[tuple[int, str]] = field(default_factory=set)

    def put(self, name: str, digest: str) -> None:
        """Record a part; two different objects under one name (two lambdas) both count."""
        key, n = name, 1
        while key in self.parts and self.parts[key] != digest:
            n += 1
            key = f"{name}#{n}"
        self.parts[key] = digest

    def warn(self, what: str) -> None:
        self.warnings.append(f"Cache key of step '{self.step}': {what}. If that changes results, declare "
                             "@step(cache_version=...) or @step(cache_key=...) so the cache sees it.")

    def visit(self, obj: Any, name: str) -> None:
        """Hash ``obj`` if it is the user's code, and follow what it uses."""
        obj = _unwrap(obj)
        if not isinstance(obj, types.FunctionType | type | types.ModuleType | functools.partial):
            self.value(obj, name)     # values are told apart by name: equal small ints share an id
            return
        if id(obj) in self.seen:
            return
        self.seen[id(obj)] = obj
        if isinstance(obj, functools.partial):
            self.visit(obj.func, name)
            for i, a in enumerate(obj.args):
                self.value(a, f"{name}.args[{i}]")
            for k, a in obj.keywords.items():
                self.value(a, f"{name}.{k}")
        elif isinstance(obj, types.FunctionType):
            if self.root or is_user_function(obj):   # the step's own body always counts, wherever it lives
                name, self.root = self.root or display_name(obj), ""
                self.function(obj, name)
        elif isinstance(obj, type):
            if is_user_class(obj):
                self.klass(obj, display_name(obj))
        elif module_is_user(obj):
            self.module(obj)

    # functions ------------------------------------------------------------------------------

    def function(self, fn: types.FunctionType, name: str) -> None:
        tree = _parse(fn)
        if tree is not None and _stale([fn.__code__]):
            self.warn(f"the file defining {name} changed after it was imported; the loaded code's bytecode is "
                      "hashed (restart the process to run the edited code)")
            tree = None
        elif tree is None and fn.__name__ != "<lambda>":   # a lambda is hashed by bytecode on purpose
            self.warn(f"the source of {name} cannot be read; its bytecode is hashed instead")
        if tree is None:
            self.put(name, _bytecode_hash(fn.__code__))
            refs: Iterator[tuple[str, ...]] = ((n,) for n in _code_names(fn.__code__))
        else:
            self.put(name, _hash_text(normalised_source(tree)))
            refs = references(tree)
        scope = _Scope(fn.__globals__, _closure(fn), fn.__globals__.get("__package__"), owner=name)
        self.follow(scope, refs)
        for default in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
            if callable(default) or isinstance(default, types.ModuleType):
                self.visit(default, display_name(default))
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            self.visit(wrapped, display_name(wrapped))

    def klass(self, cls: type, name: str) -> None:
        methods = [m.__code__ for m in map(_unwrap, vars(cls).values()) if isinstance(m, types.FunctionType)
                   and not m.__code__.co_filename.startswith("<")]   # not a dataclass's generated methods
        try:
            source = textwrap.dedent(inspect.getsource(cls))
            tree = ast.parse(source)
            if _stale(methods):
                raise OSError("the file changed after it was imported (restart the process to run the edited code)")
        except (OSError, TypeError, SyntaxError) as exc:
            self.warn(f"the source of class {name} cannot be used ({exc}); its methods' bytecode is hashed instead")
            h = hashlib.sha256()
            for key, member in sorted(vars(cls).items()):
                member = _unwrap(member)
                if isinstance(member, types.FunctionType):
                    h.update(f"{key}:{_bytecode_hash(member.__code__)}".encode())
                    self.visit(member, f"{name}.{key}")
            self.put(name, h.hexdigest())
            return
        self.put(name, _hash_text(normalised_source(tree)))
        module = sys.modules.get(cls.__module__)
        scope = _Scope(vars(module) if module else {}, {}, getattr(module, "__package__", None))
        self.follow(scope, references(tree))

    def module(self, module: types.ModuleType) -> None:
        """A user module used as a value: hash all of it and follow everything it defines."""
        label = module_label(module.__name__)
        try:
            tree = ast.parse(Path(module.__file__ or "").read_text())
            self.put(f"{label} (whole module)", _hash_text(normalised_source(tree)))
        except (OSError, SyntaxError, ValueError):
            self.warn(f"the source of module {label} cannot be read")
            self.put(f"{label} (whole module)", _hash_text(repr(sorted(vars(module)))))
        for key, member in list(vars(module).items()):
            if key.startswith("__"):
                continue
            if getattr(member, "__module__", None) == module.__name__:
                self.visit(member, f"{label}.{key}")

    # names ----------------------------------------------------------------------------------

    def follow(self, scope: _Scope, refs: Iterator[tuple[str, ...]]) -> None:
        """Resolve every reference; imports inside the body first, since they bind names."""
        chains = list(refs)
        for chain in chains:
            if chain[0] in IMPORT_MARKERS:
                self.local_import(scope, chain)
        for chain in chains:
            if chain[0] == DYNAMIC:
                self.dynamic(scope, chain[1])
            elif chain[0] not in IMPORT_MARKERS:
                self.reference(scope, chain)

    def dynamic(self, scope: _Scope, target: str) -> None:
        """A lookup by computed name: a user module looked into is hashed whole; eval and friends are said."""
        if target in DYNAMIC_CALLS:
            self.warn(f"{scope.owner or 'code it reaches'} calls {target}() with a computed argument; "
                      "code reached that way is not seen")
            return
        found, obj = scope.lookup(target)
        if found and isinstance(obj, types.ModuleType) and module_is_user(obj):
            self.visit(obj, module_label(obj.__name__))   # any of its names may be looked up

    def local_import(self, scope: _Scope, chain: tuple[str, ...]) -> None:
        """An import inside a function body: bind the name to the loaded module, or hash the file."""
        found, obj, label = _resolve_import(chain, scope.package)
        if found:
            if chain[0] == IMPORT:
                top = chain[1].split(".")[0]
                scope.local_imports[top] = sys.modules.get(top, obj)
            else:
                scope.local_imports[chain[2]] = obj
                if not isinstance(obj, types.ModuleType):   # a module is followed through its attributes
                    self.visit(obj, label)
            return
        modname = chain[1] if chain[0] == IMPORT else label.rsplit(".", 1)[0]
        origin = _origin(modname, scope.package)
        if origin and is_user_file(origin):
            key = f"{module_label(modname)} (whole module)"
            try:
                self.put(key, _hash_text(normalised_source(ast.parse(Path(origin).read_text()))))
            except (OSError, SyntaxError, ValueError):
                self.warn(f"module {modname}, imported inside a function, cannot be read")
                self.put(key, _hash_text(origin))

    def reference(self, scope: _Scope, chain: tuple[str, ...]) -> None:
        """Resolve ``a.b.c`` through modules to the object it names, and visit that object."""
        found, obj = scope.lookup(chain[0])
        if not found:
            return         # a local variable, a builtin, or a name made at run time
        if chain[0] in scope.local_imports and not isinstance(obj, types.ModuleType):
            return         # visited where it was imported, under its home module's name
        label = ""       # where the object lives: ``helpers.clean`` however the code spelled it
        for attr in chain[1:]:
            if not isinstance(obj, types.ModuleType) or not hasattr(obj, attr):
                break
            if not module_is_user(obj):
                return     # np.mean, os.path.join: third-party code, covered by the environment's versions
            label = f"{module_label(obj.__name__)}.{attr}"
            obj = getattr(obj, attr)
        label = label or _owner_label(scope, chain[0])
        if _third_party_code(obj):
            return
        if isinstance(obj, types.ModuleType):
            if len(chain) == 1 or not hasattr(obj, chain[-1]):
                self.visit(obj, label)   # a module passed around whole, or an attribute made at run time
            return
        if isinstance(obj, types.FunctionType | type | functools.partial) or _unwrap(obj) is not obj:
            self.visit(obj, label)
            return
        if isinstance(obj, types.BuiltinFunctionType | types.MethodType | types.MethodWrapperType):
            return
        self.value(obj, label)

    def value(self, obj: Any, name: str) -> None:
        """A constant: hash its content; follow the functions and classes it holds."""
        if (id(obj), name) in self.valued:
            return
        self.valued.add((id(obj), name))
        self.seen.setdefault(id(obj), obj)
        try:
            text = self.canonical(obj, depth=0)
        except _Opaque as why:
            self.warn(f"the value of {name} ({type(obj).__module__}.{type(obj).__qualname__}) cannot be "
                       f"fingerprinted ({why}); only its type is part of the key")
            text = f"<{type(obj).__module__}.{type(obj).__qualname__}>"
        self.put(name, _hash_text(text))

    def canonical(self, obj: Any, depth: int) -> str:
        if depth > 50:
            raise _Opaque("nested too deeply")
        if isinstance(obj, _PLAIN):
            return repr(obj)
        if isinstance(obj, list | tuple):
            return type(obj).__name__ + "(" + ",".join(self.canonical(v, depth + 1) for v in obj) + ")"
        if isinstance(obj, set | frozenset):
            return type(obj).__name__ + "(" + ",".join(sorted(self.canonical(v, depth + 1) for v in obj)) + ")"
        if isinstance(obj, dict):
            items = sorted((self.canonical(k, depth + 1), self.canonical(v, depth + 1)) for k, v in obj.items())
            return "dict(" + ",".join(f"{k}:{v}" for k, v in items) + ")"
        if isinstance(obj, types.FunctionType | type | types.ModuleType | functools.partial):
            self.visit(obj, display_name(obj))
            return f"<ref {display_name(obj)}>"
        cls = type(obj)
        if is_user_class(cls):
            self.visit(cls, display_name(cls))
            state = getattr(obj, "__dict__", None)
            if state is not None:
                return f"{display_name(cls)}{self.canonical(dict(state), depth + 1)}"
        try:
            return f"{cls.__module__}.{cls.__qualname__}:" + hashlib.sha256(
                pickle.dumps(obj, protocol=4)).hexdigest()
        except Exception as exc:  # any object may refuse pickling in its own way
            raise _Opaque(f"{type(exc).__name__}: {exc}") from None


class _Opaque(Exception):
    """A value whose content cannot be fingerprinted."""


@dataclass(slots=True)
class _Scope:
    globals: Mapping[str, Any]
    closure: Mapping[str, Any]
    package: str | None
    owner: str = ""
    local_imports: dict[str, Any] = field(default_factory=dict)

    def lookup(self, name: str) -> tuple[bool, Any]:
        for space in (self.local_imports, self.closure, self.globals):
            if name in space:
                return True, space[name]
        return False, None


def _owner_label(scope: _Scope, name: str) -> str:
    if name in scope.closure:
        return f"{scope.owner}.{name} (closure)"
    return f"{module_label(str(scope.globals.get('__name__', '')))}.{name}"


# --- helpers of the walk ------------------------------------------------------------------------

def _unwrap(obj: Any) -> Any:
    from conveyor.dsl.step import Step

    while True:
        if isinstance(obj, Step):
            obj = obj.spec.fn
        elif isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif isinstance(obj, property) and obj.fget is not None:
            obj = obj.fget
        else:
            return obj


def _third_party_code(obj: Any) -> bool:
    """A module, class or callable that belongs to an installed package or the stdlib."""
    if isinstance(obj, types.ModuleType):
        return not module_is_user(obj)
    if isinstance(obj, (*_PLAIN, list, tuple, dict, set, frozenset)):
        return False
    # classes, functions and function-like objects (numpy ufuncs) carry their own __qualname__;
    # instances (an estimator, an array, a torch module) do not, and are values to fingerprint
    if isinstance(obj, type) or inspect.isroutine(obj) or hasattr(obj, "__qualname__"):
        owner = getattr(obj, "__module__", None)
        if isinstance(owner, str) and not isinstance(_unwrap(obj), types.FunctionType):
            return not module_is_user(sys.modules.get(owner))
    return False


def _closure(fn: types.FunctionType) -> dict[str, Any]:
    cells = fn.__closure__ or ()
    out: dict[str, Any] = {}
    for name, cell in zip(fn.__code__.co_freevars, cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:   # an empty cell: the variable is assigned later
            continue
    return out


def _parse(fn: types.FunctionType) -> ast.AST | None:
    if fn.__name__ == "<lambda>":
        return None        # getsource returns the whole line around a lambda; bytecode is exact
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None


def _stale(loaded: list[types.CodeType]) -> bool:
    """True when a file on disk no longer compiles to the code that is loaded (edited since import).

    Without this check a long-lived process (a notebook) would run the old code under the new
    code's key. The whole file is compiled, as the import did, so the bytecode can be compared.
    """
    for code in loaded:
        twins = _compiled_file(code.co_filename).get((code.co_name, code.co_firstlineno))
        if twins is None or not any(_same_code(code, t) for t in twins):
            return True
    return False


def _compiled_file(filename: str) -> dict[tuple[str, int], list[types.CodeType]]:
    """Every code object of ``filename`` as it is now on disk, by (name, first line)."""
    try:
        stat = Path(filename).stat()
    except OSError:
        return {}
    key = (filename, stat.st_mtime_ns, stat.st_size)
    hit = _COMPILED.get(key)
    if hit is not None:
        return hit
    index: dict[tuple[str, int], list[types.CodeType]] = {}
    try:
        stack = [compile(Path(filename).read_bytes(), filename, "exec", dont_inherit=True)]
    except (OSError, SyntaxError, ValueError):
        stack = []
    while stack:
        code = stack.pop()
        index.setdefault((code.co_name, code.co_firstlineno), []).append(code)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    _COMPILED[key] = index
    return index


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    if a.co_code != b.co_code or a.co_names != b.co_names or len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or repr(x) != repr(y):
            return False
    return True


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _bytecode_hash(code: types.CodeType) -> str:
    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        h.update(_bytecode_hash(const).encode() if isinstance(const, types.CodeType) else repr(const).encode())
    return h.hexdigest()


def _hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _resolve_import(chain: tuple[str, ...], package: str | None) -> tuple[bool, Any, str]:
    """An import inside a function body: the module (or name) it binds, without importing anything new."""
    if chain[0] == IMPORT:
        modname = chain[1]
        module = sys.modules.get(modname)
        return (module is not None), module, modname
    target, attr = chain[1], chain[2]
    try:
        modname = importlib.util.resolve_name(target, package) if target.startswith(".") else target
    except (ImportError, ValueError):
        return False, None, target
    module = sys.modules.get(modname)
    if module is None:
        return False, None, modname
    if hasattr(module, attr):
        return True, getattr(module, attr), f"{modname}.{attr}"
    sub = sys.modules.get(f"{modname}.{attr}")
    return (sub is not None), sub, f"{modname}.{attr}"


def _origin(modname: str, package: str | None) -> str | None:
    try:
        name = importlib.util.resolve_name(modname, package) if modname.startswith(".") else modname
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return spec.origin if spec is not None else None
