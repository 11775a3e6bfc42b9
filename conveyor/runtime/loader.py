"""Loading pipelines from ``file.py:name`` or ``package.module:name`` references."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.errors import ConveyorError, PipelineDefinitionError


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"conveyor_user_{path.stem}_{digest}"


def load_module_from_file(path: Path) -> ModuleType:
    """Import a Python file under a stable synthetic name (its ``__main__`` block does not run)."""
    path = path.resolve()
    name = _module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    if not path.exists():
        raise PipelineDefinitionError(f"Pipeline file {path} does not exist.")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineDefinitionError(f"Cannot import {path}: not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except PipelineDefinitionError as exc:   # a mis-declared step or pipeline: say where it is declared
        del sys.modules[name]
        where = _innermost_frame(exc, str(path))
        if where and where[0] == str(path) and not exc.message.startswith(str(path)):
            raise type(exc)(f"{where[0]}, line {where[1]}: {exc.message}") from exc
        raise
    except ConveyorError:
        del sys.modules[name]
        raise
    except Exception as exc:
        del sys.modules[name]
        raise loading_error(str(path), exc) from exc
    return module


def _innermost_frame(exc: BaseException, prefer: str | None = None) -> tuple[str, int] | None:
    """(file, line) where an import failed: the innermost frame in ``prefer`` if given, else the
    innermost frame of the user's own code (not the standard library or installed packages)."""
    library = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    own = preferred = None
    tb = exc.__traceback__
    while tb is not None:   # "<frozen ...>" frames are the import machinery
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<") and not filename.startswith(library):
            own = (filename, tb.tb_lineno)
            if filename == prefer:
                preferred = own
        tb = tb.tb_next
    return preferred or own


def loading_error(what: str, exc: BaseException) -> PipelineDefinitionError:
    """A file (or module) that fails to import, as one message: which file, which line, what, how to fix."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename or what}, line {exc.lineno}"
        code = f"\n    {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        return PipelineDefinitionError(
            f"{where}: {type(exc).__name__}: {exc.msg}.{code}\nFix the file, then run the command again.")
    frame = _innermost_frame(exc)
    where = f"{frame[0]}, line {frame[1]}" if frame else what
    if isinstance(exc, ImportError):
        missing = f" Install '{exc.name}' into this environment or fix the import." if exc.name else ""
        return PipelineDefinitionError(
            f"{where}: {type(exc).__name__}: {exc} (while importing {what}).{missing}")
    return PipelineDefinitionError(
        f"{where}: {type(exc).__name__}: {exc} (while importing {what}). Fix the file, then run the command "
        "again; `conveyor --debug ...` shows the full traceback.")


def load_pipeline(ref: str) -> Any:
    """The pipeline object named by ``path/to/file.py:name`` or ``package.module:name``."""
    from conveyor.dsl.pipeline import Pipeline

    if ":" not in ref:
        raise PipelineDefinitionError(
            f"'{ref}' does not name a pipeline. Use FILE.py:PIPELINE or package.module:PIPELINE, "
            "e.g. examples/quickstart.py:training.")
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        module = load_module_from_file(path)
        canonical = f"{path.resolve()}:{attr}"
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name and target.startswith(exc.name):
                raise PipelineDefinitionError(
                    f"Cannot import module '{target}': {exc}. Check the name, or name a file: FILE.py:PIPELINE."
                ) from None
            raise loading_error(f"module '{target}'", exc) from exc
        except ConveyorError:
            raise
        except Exception as exc:
            raise loading_error(f"module '{target}'", exc) from exc
        canonical = ref
    obj = getattr(module, attr, None)
    if not isinstance(obj, Pipeline):
        found = [k for k, v in vars(module).items() if isinstance(v, Pipeline)]
        raise PipelineDefinitionError(
            f"'{attr}' in {target} is not a pipeline. Pipelines there: {', '.join(found) or '(none)'}.")
    obj.ref = canonical
    return obj


def pipeline_ref(pipeline: Any) -> str | None:
    """A reference that lets another process (or `runs resume`) load this pipeline again."""
    if pipeline.ref:
        return pipeline.ref
    fn = pipeline.fn
    module = sys.modules.get(fn.__module__)
    file = getattr(module, "__file__", None)
    if fn.__module__ not in ("__main__",) and not fn.__module__.startswith("conveyor_user_"):
        return f"{fn.__module__}:{fn.__name__}"
    return f"{Path(file).resolve()}:{fn.__name__}" if file else None
