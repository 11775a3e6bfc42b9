"""Cache keys: what makes two step calls the same call, and why a call was not the same as before."""

from __future__ import annotations

import glob
import hashlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from conveyor.errors import StepFailed

CACHE_FORMAT = "2"


def compute_cache_key(*, step: str, code_hash: str, inputs: Mapping[str, object],
                      outputs: tuple[str, ...], declared: Mapping[str, object] | None = None) -> str:
    """Hash the step's reached code, its outputs' names, its inputs' fingerprints and what it declares.

    ``code_hash`` is the digest of the step's function and the user's code it reaches (see
    ``runtime.code_hash``); ``inputs`` maps an input name to a JSON-able fingerprint built from
    content hashes and materializer versions (see ``runtime.slots``), so equal data under a new
    artifact id, from any step, still hits; ``declared`` holds the step's ``cache_version``, the
    hashes of its ``cache_files`` and the value of its ``cache_key`` callable.
    """
    payload = {"v": CACHE_FORMAT, "step": step, "code": code_hash, "outputs": list(outputs), "inputs": inputs,
               "declared": dict(declared or {})}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def hash_cache_files(patterns: tuple[str, ...], base: Path, step: str) -> dict[str, str]:
    """Content hashes of the files matched by ``cache_files`` globs, relative to ``base``.

    A pattern matching nothing enters the key as such (so a file appearing later is a change).
    """
    found: dict[str, str] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(str(base / pattern), recursive=True))
        files = [m for m in matches if Path(m).is_file()]
        if not files:
            found[pattern] = "(no file)"
        for m in files:
            try:
                found[str(Path(m).relative_to(base))] = hashlib.sha256(Path(m).read_bytes()).hexdigest()
            except OSError as exc:
                raise StepFailed(f"Step '{step}': cache file {m} cannot be read ({exc}). "
                                 "Fix its permissions or remove it from cache_files.") from None
    return found


def call_cache_key(fn: Any, args: Mapping[str, Any], step: str) -> Any:
    """Call a step's ``cache_key`` callable with the arguments it accepts; its result must be JSON-able."""
    try:
        params = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            chosen = dict(args)
        else:
            chosen = {k: v for k, v in args.items() if k in params}
        value = fn(**chosen)
    except Exception as exc:  # the user's callable may raise anything
        raise StepFailed(f"Step '{step}': its cache_key function raised {type(exc).__name__}: {exc}. "
                         "Fix it, or run without the cache (--no-cache).") from exc
    try:
        orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise StepFailed(f"Step '{step}': its cache_key function returned {type(value).__name__}, which is not "
                         "JSON-able. Return a string, number, list or dict (e.g. a file's hash).") from None
    return value


@dataclass(frozen=True, slots=True)
class KeyParts:
    """The components of one call's cache key, stored with the step run to explain a later miss."""

    code: Mapping[str, str]              # readable name (helpers.clean) -> hash
    code_digest: str                     # one hash over ``code``
    params: Mapping[str, Any]            # literal arguments' fingerprints
    inputs: Mapping[str, Any]            # upstream outputs' fingerprints
    outputs: tuple[str, ...]
    declared: Mapping[str, Any]          # cache_version, cache_files, cache_key
    uncached: str | None = None          # "run" (cache turned off for the run) or "step" (cache=False)
    shown: Mapping[str, str] = field(default_factory=dict)   # parameters' values, short, for miss reasons

    def to_json(self) -> dict[str, Any]:
        """JSON-able form for the step run's ``cache_parts`` column."""
        return {"code": dict(self.code), "params": dict(self.params), "inputs": dict(self.inputs),
                "outputs": list(self.outputs), "declared": dict(self.declared), "uncached": self.uncached,
                "shown": dict(self.shown)}


def explain_miss(current: Mapping[str, Any] | None, previous: Mapping[str, Any] | None,
                 previous_status: str | None = None) -> str:
    """Why a step ran instead of reusing a cached result, in one sentence.

    ``current`` and ``previous`` are stored ``cache_parts`` of this call and of the most recent
    earlier call of the same node in the same pipeline (``None`` when there is none).
    """
    if current is None:
        return "no cache key was recorded for this step run"
    if current.get("uncached") == "step":
        return "the step is declared cache=False (never cached)"
    if current.get("uncached") == "run":
        return "the cache was turned off for this run (--no-cache / cache=False)"
    if previous is None:
        return "no earlier run of this step"
    reasons: list[str] = []
    code_now, code_then = current.get("code", {}), previous.get("code", {})
    changed = sorted(k for k in code_now if k in code_then and code_now[k] != code_then[k])
    added = sorted(k for k in code_now if k not in code_then)
    removed = sorted(k for k in code_then if k not in code_now)
    if changed:
        reasons.append("code changed: " + ", ".join(changed))
    if added:
        reasons.append("code now reaches: " + ", ".join(added))
    if removed:
        reasons.append("code no longer reaches: " + ", ".join(removed))
    for kind, label in (("params", "parameter"), ("inputs", "input")):
        now, then = current.get(kind, {}), previous.get(kind, {})
        diff = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        if diff:
            names = [_with_values(k, previous.get("shown", {}), current.get("shown", {})) for k in diff]
            reasons.append(f"{label}{'s' if len(diff) > 1 else ''} changed: " + ", ".join(names))
    if list(current.get("outputs", [])) != list(previous.get("outputs", [])):
        reasons.append(f"outputs changed: {previous.get('outputs')} -> {current.get('outputs')}")
    dnow, dthen = current.get("declared", {}), previous.get("declared", {})
    for key, label in (("version", "cache_version"), ("files", "cache_files"), ("key", "cache_key value")):
        if dnow.get(key) != dthen.get(key):
            if key == "files" and isinstance(dnow.get(key), dict) and isinstance(dthen.get(key), dict):
                files = sorted(f for f in set(dnow[key]) | set(dthen[key]) if dnow[key].get(f) != dthen[key].get(f))
                reasons.append("cache file changed: " + ", ".join(files))
            else:
                reasons.append(f"{label} changed: {dthen.get(key)!r} -> {dnow.get(key)!r}")
    if reasons:
        return "; ".join(reasons)
    if previous.get("uncached"):
        return "the earlier run of this step was not cached, so no result was kept"
    if previous_status not in ("succeeded", "cached"):
        return f"same key as the earlier run of this step, which {previous_status or 'did not finish'}"
    return "same key as the earlier run of this step, but its outputs were not found"


def _with_values(name: str, then: Mapping[str, str], now: Mapping[str, str]) -> str:
    if name in then and name in now:
        return f"{name} ({then[name]} -> {now[name]})"
    return name


def key_parts(spec: Any, fingerprints: Mapping[str, Any], param_names: set[str], arguments: Any,
              uncached: str | None, shown: Mapping[str, Any] | None = None) -> KeyParts:
    """Gather the components of a call's key: reached code, parameters, inputs and declarations.

    ``arguments`` is a function returning the call's resolved argument values; it is called only
    when the step declares ``cache_key``.
    """
    from conveyor.runtime.code_hash import reached_code

    declared: dict[str, Any] = {}
    if spec.cache_version:
        declared["version"] = spec.cache_version
    if spec.cache_files:
        base = Path(spec.source_file).parent if spec.source_file else Path.cwd()
        declared["files"] = hash_cache_files(spec.cache_files, base, spec.name)
    if spec.cache_key is not None and uncached is None:
        declared["key"] = call_cache_key(spec.cache_key, arguments(), spec.name)
    code = reached_code(spec.fn, step=spec.name)
    return KeyParts(code=code.parts, code_digest=code.digest,
                    params={k: v for k, v in fingerprints.items() if k in param_names},
                    inputs={k: v for k, v in fingerprints.items() if k not in param_names},
                    outputs=tuple(spec.outputs), declared=declared, uncached=uncached,
                    shown={k: _short(v) for k, v in (shown or {}).items() if k in param_names})


def _short(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    except TypeError:      # e.g. an int beyond 64 bits
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parts_key(step: str, parts: KeyParts) -> str:
    """The cache key of a call from its components."""
    return compute_cache_key(step=step, code_hash=parts.code_digest, inputs={**parts.params, **parts.inputs},
                             outputs=parts.outputs, declared=parts.declared)


def miss_reasons(metadata: Any, run_id: str) -> dict[str, str]:
    """For each step run of ``run_id`` that ran instead of hitting the cache: why, by node name."""
    run = metadata.runs.get(run_id)
    out: dict[str, str] = {}
    for s in metadata.steps.for_run(run_id):
        if s.cache_hit or s.status not in ("succeeded", "failed", "running"):
            continue
        current = metadata.steps.cache_parts(s.id)
        if current is None and s.status == "failed" and s.cache_key is None:
            continue       # failed before it could be keyed (a bad condition or map input)
        prev = metadata.steps.previous_call(run.pipeline_name, s.name, before=s.started_at or 0.0,
                                            exclude=s.id)
        if prev is not None and prev[0] is None and current is not None and not current.get("uncached"):
            out[s.name] = "the earlier run of this step was recorded without its key's components; no comparison"
            continue
        out[s.name] = explain_miss(current, prev[0] if prev else None, prev[1] if prev else None)
    return out
