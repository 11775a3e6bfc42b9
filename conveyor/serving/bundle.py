"""A model bundle: one model version that serves without a metadata database.

Layout, in a folder, under any fsspec URL, or packed as ``model.tar.gz`` (what SageMaker unpacks)::

    conveyor-model.json          the manifest: hash, materializer, signature, flavor, lineage, pins
    objects/<hh>/<hash>          the model artifact's bytes, exactly as the artifact store keeps them

The bundle is an artifact store of one object, so the server reads it with ``ArtifactStore.get``:
the bytes are hashed before anything deserialises them, and ``CONVEYOR_ALLOW_PICKLE`` is judged on
where the bundle is read from (a local folder, or a remote URL such as Vertex AI's ``gs://`` copy).
The manifest is written last, so an interrupted export leaves no bundle rather than half of one.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import conveyor
from conveyor.errors import ArtifactIntegrityError, ConveyorError, InvalidRequest, NotFound
from conveyor.serving.catalog import LoadedModel, ModelKey, Signature
from conveyor.store.artifacts.hashing import digest
from conveyor.store.artifacts.retry import RetryPolicy, from_backend, translated, with_retries
from conveyor.store.artifacts.store import ArtifactStore, StoredArtifact

log = logging.getLogger("conveyor.serving")
T = TypeVar("T")

MANIFEST = "conveyor-model.json"
FORMAT = "conveyor.model-bundle"
FORMAT_VERSION = 1
TARBALL_SUFFIXES = (".tar.gz", ".tgz")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A located bundle: the folder (path or URL) holding its manifest, and the manifest itself."""

    root: str
    manifest: dict[str, Any]
    remote: bool          # read from an object store (not a local folder): pickles need CONVEYOR_ALLOW_PICKLE=true
    origin: str = ""      # where the platform said the model is (a tarball is unpacked elsewhere)

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.manifest["model"]["name"], int(self.manifest["model"]["version"]))

    @property
    def signature(self) -> Signature | None:
        return Signature.from_dict(self.manifest.get("signature"))

    def stored(self) -> StoredArtifact:
        """The artifact as the store describes it; ``uri`` inside this bundle."""
        a = self.manifest["artifact"]
        return StoredArtifact(content_hash=a["content_hash"], materializer=a["materializer"],
                              materializer_version=a.get("materializer_version", ""), type_name=a.get("type_name", ""),
                              size=int(a.get("size") or 0), uri=None if "inline" in a else f"{self.root}/{a['path']}",
                              inline=a.get("inline"), meta=a.get("meta") or {})


def object_path(content_hash: str) -> str:
    """Where the bytes of ``content_hash`` sit inside a bundle (the artifact store's own layout)."""
    hexpart = content_hash.split(":", 1)[-1]
    return f"objects/{hexpart[:2]}/{hexpart}"


# --- writing -------------------------------------------------------------------------------------


def flavor_of(type_name: str, materializer: str) -> str:
    """The library a model belongs to (``sklearn``, ``xgboost``…), from its type's top-level module."""
    root = type_name.split(".", 1)[0] if type_name else ""
    return root if root and root != "builtins" else materializer


def manifest_for(version: Any, stored: StoredArtifact, lineage: Any, packages: Mapping[str, str],
                 python: str | None) -> dict[str, Any]:
    """The manifest of one registered version (``version`` a VersionRecord, ``lineage`` a registry Lineage)."""
    artifact: dict[str, Any] = {"content_hash": stored.content_hash, "materializer": stored.materializer,
                                "materializer_version": stored.materializer_version, "type_name": stored.type_name,
                                "size": stored.size, "meta": stored.meta or {}}
    if stored.uri is None:
        artifact["inline"] = stored.inline
    else:
        artifact["path"] = object_path(stored.content_hash)
    run = lineage.run or {}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "conveyor_version": conveyor.__version__,
        "model": {"name": version.model, "version": version.version, "aliases": list(version.aliases),
                  "approval": version.approval, "metrics": dict(version.metrics or {}),
                  "tags": dict(version.tags or {})},
        "artifact": artifact,
        "signature": version.signature,
        "flavor": flavor_of(stored.type_name, stored.materializer),
        "lineage": {"run_id": run.get("id"), "pipeline": run.get("pipeline"), "git_commit": run.get("git_commit"),
                    "git_dirty": run.get("git_dirty"), "pipeline_version": run.get("pipeline_version"),
                    "steps": [s["name"] for s in lineage.steps],
                    "inputs": [{"step": i["step"], "input": i["input"], "content_hash": i["content_hash"]}
                               for i in lineage.inputs]},
        "environment": {"python": python, "packages": dict(sorted(packages.items()))},
    }


def serving_packages(captured: Mapping[str, str], flavor: str) -> dict[str, str]:
    """Pins of what serving the model needs: Conveyor's runtime dependencies (transitively) and the
    model's own library, at the versions of ``captured`` (the training run's environment) where it
    has them, else of this process."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires, version

    def requirement_names(dist: str) -> list[str]:
        try:
            reqs = requires(dist) or []
        except PackageNotFoundError:
            return []
        names = []
        for req in reqs:
            if re.search(r"\bextra\s*==", req):
                continue
            if ";" in req and not _marker_holds(req.split(";", 1)[1]):
                continue
            match = re.match(r"[A-Za-z0-9._-]+", req.strip())
            if match:
                names.append(match.group(0).lower().replace("_", "-"))
        return names

    wanted = set(requirement_names("conveyor"))
    wanted.update(d.lower() for d in packages_distributions().get(flavor, []))
    seen: set[str] = set()
    while wanted - seen:
        name = (wanted - seen).pop()
        seen.add(name)
        wanted.update(requirement_names(name))
    pins: dict[str, str] = {}
    normal = {k.lower().replace("_", "-"): v for k, v in captured.items()}
    for name in sorted(seen):
        found = normal.get(name)
        if found is None:
            try:
                found = version(name)
            except PackageNotFoundError:
                continue
        pins[name] = found
    pins.pop("conveyor", None)
    return pins


def _marker_holds(marker: str) -> bool:
    """Whether an environment marker holds on a Linux image (unknown markers count as holding)."""
    try:
        from packaging.markers import Marker
    except ImportError:   # no packaging: keep the requirement, pip decides at build time
        return True
    try:
        linux = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
        return Marker(marker.strip()).evaluate(linux)
    except Exception:   # a marker packaging cannot read: keep the requirement rather than lose a dependency
        return True


def write_bundle(manifest: Mapping[str, Any], data: bytes | None, dest: str) -> str:
    """Write a bundle to ``dest`` (a folder, any fsspec URL, or a ``.tar.gz`` name); returns ``dest``.

    ``data`` are the artifact's bytes, already verified against ``manifest`` (None for an inline value).
    """
    import fsspec

    if dest.endswith(TARBALL_SUFFIXES):
        with tempfile.TemporaryDirectory(prefix="conveyor-bundle-") as tmp:
            folder = Path(tmp) / "bundle"
            write_bundle(manifest, data, str(folder))
            tarball = Path(tmp) / "model.tar.gz"
            with tarfile.open(tarball, "w:gz") as tar:
                for path in sorted(folder.rglob("*")):      # files at the archive's root, as SageMaker unpacks it
                    tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
            fs, target = fsspec.core.url_to_fs(dest)
            parent = target.rsplit("/", 1)[0]
            if parent and parent != target:
                fs.makedirs(parent, exist_ok=True)
            fs.put_file(str(tarball), target)
        return dest
    fs, base = fsspec.core.url_to_fs(dest)
    base = base.rstrip("/")
    art = manifest["artifact"]
    if data is not None:
        path = f"{base}/{art['path']}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)
        written = fs.size(path)
        if written != len(data):
            raise ArtifactIntegrityError(f"Writing the model bundle to {dest} stored {written} of {len(data)} bytes "
                                         f"at {art['path']}. Check the destination's free space and export again.")
    else:
        fs.makedirs(base, exist_ok=True)
    with fs.open(f"{base}/{MANIFEST}", "wb") as fh:    # last: a bundle without a manifest is no bundle
        fh.write(json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    return dest


def export_bundle(client: Any, ref: str, dest: str) -> dict[str, Any]:
    """Write version ``ref`` (``churn:3``, ``churn@production``) of ``client``'s registry as a bundle at ``dest``."""
    from conveyor.runtime.environment import python_environment
    from conveyor.runtime.slots import stored_from_record

    registry = client.registry
    version = registry.resolve(ref)
    stored = stored_from_record(client.metadata.artifacts.get(version.artifact_id))
    data = None if stored.uri is None else client.artifacts.read_verified(stored)   # hash checked here, once
    lineage = registry.lineage(f"{version.model}:{version.version}")
    captured: dict[str, Any] = {}
    if version.run_id:
        run = client.metadata.runs.get(version.run_id)
        if run.environment_hash:
            captured = client.metadata.runs.environment(run.environment_hash)
    if not captured.get("packages"):
        captured = python_environment()
    packages = serving_packages(captured.get("packages") or {}, flavor_of(stored.type_name, stored.materializer))
    manifest = manifest_for(version, stored, lineage, packages, captured.get("python"))
    remote = "://" in dest and not dest.startswith("file://")
    store_io(lambda: write_bundle(manifest, data, dest), "writing the model bundle", dest, remote)
    return manifest


# --- reading -------------------------------------------------------------------------------------


def _is_remote(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return not {"file", "local"}.intersection(protocols)


def _unpack(fs: Any, tarball: str, scratch: Path) -> Path:
    """Unpack a ``model.tar.gz`` (local or remote) into ``scratch``; members may not leave it."""
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with fs.open(tarball, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            tar.extractall(scratch, filter="data")       # refuses absolute paths, '..' and links out of the folder
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactIntegrityError(f"The model tarball {fs.unstrip_protocol(tarball)} could not be unpacked "
                                     f"safely ({type(exc).__name__}: {exc}); nothing from it was loaded. Export it "
                                     "again with `conveyor models export MODEL_REF DEST.tar.gz`.") from None
    return scratch


def locate_bundle(location: str, *, scratch: Path, fix: str) -> ModelBundle:
    """The bundle at ``location``: its folder, a folder below it (Azure ML nests one), or a ``model.tar.gz``.

    ``fix`` says how to put a model there on this platform; it ends every not-found message.
    """
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise NotFound(f"Cannot open the model location {location!r}: {exc}. gs:// needs gcsfs, s3:// s3fs and "
                       "az:// adlfs in the image.") from None
    remote = _is_remote(fs)
    return store_io(lambda: _locate(fs, base.rstrip("/") or base, location, remote, scratch, fix),
                     "reading the model bundle", location, remote)


def store_io(fn: Callable[[], T], what: str, where: str, remote: bool) -> T:
    """Run bundle I/O as the artifact store runs its own: transient errors retried, library errors translated."""
    try:
        return with_retries(RetryPolicy(), fn, remote=remote, what=what, where=where)
    except ConveyorError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) or from_backend(exc):
            raise translated(exc, what=what, where=where, root=where) from None
        raise


def _locate(fs: Any, base: str, location: str, remote: bool, scratch: Path, fix: str) -> ModelBundle:
    if not fs.exists(base):
        raise NotFound(f"No model at {location}: it does not exist. {fix}")
    if fs.isfile(base):
        if base.endswith(TARBALL_SUFFIXES):
            inner = locate_bundle(str(_unpack(fs, base, scratch)), scratch=scratch / "nested", fix=fix)
            return ModelBundle(inner.root, inner.manifest, remote or inner.remote, location)
        raise NotFound(f"The model location {location} is a file, not a model bundle (a folder holding {MANIFEST} "
                       f"or a model.tar.gz). {fix}")
    found = [p for p in fs.find(base, maxdepth=4) if p.rsplit("/", 1)[-1] == MANIFEST]
    if not found:
        tarballs = [p for p in fs.find(base, maxdepth=2) if p.endswith(TARBALL_SUFFIXES)]
        if len(tarballs) == 1:
            inner = locate_bundle(str(_unpack(fs, tarballs[0], scratch)), scratch=scratch / "nested", fix=fix)
            return ModelBundle(inner.root, inner.manifest, remote or inner.remote, fs.unstrip_protocol(tarballs[0]))
        listing = sorted(p[len(base):].lstrip("/") for p in fs.find(base, maxdepth=2))[:10]
        raise NotFound(f"No model bundle under {location}: no {MANIFEST} was found (it holds: "
                       f"{', '.join(listing) or 'nothing'}). {fix}")
    found.sort(key=lambda p: p.count("/"))
    if len(found) > 1 and found[0].count("/") == found[1].count("/"):
        raise InvalidRequest(f"{location} holds more than one model bundle ({', '.join(found[:5])}); a container "
                             "serves one. Deploy each bundle on its own.", field="model")
    root = found[0].rsplit("/", 1)[0]
    with fs.open(found[0], "rb") as fh:
        raw = fh.read()
    manifest = _check_manifest(raw, found[0])
    root = fs.unstrip_protocol(root) if remote else root
    return ModelBundle(root, manifest, remote, root)


def _check_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ArtifactIntegrityError(f"The model bundle manifest {where} is not valid JSON ({exc}). Export the "
                                     "model again with `conveyor models export MODEL_REF DEST`.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactIntegrityError(f"{where} is not a Conveyor model bundle manifest (no \"format\": \"{FORMAT}\"). "
                                     "Export the model with `conveyor models export MODEL_REF DEST`.")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactIntegrityError(f"The model bundle {where} has format version {manifest['format_version']}; "
                                     f"this Conveyor ({conveyor.__version__}) reads up to {FORMAT_VERSION}. Build the "
                                     "image with the Conveyor that exported the bundle.")
    art = manifest.get("artifact") or {}
    model = manifest.get("model") or {}
    if not _HASH.fullmatch(str(art.get("content_hash", ""))) or not art.get("materializer") or not model.get("name") \
            or not str(model.get("version", "")).isdigit():
        raise ArtifactIntegrityError(f"The model bundle manifest {where} lacks the model's name, version, content "
                                     "hash or materializer. Export the model again with `conveyor models export`.")
    if "inline" not in art:
        art["path"] = object_path(art["content_hash"])    # never a path the manifest chose: only the hash's own
    return manifest


class _BundleStore(ArtifactStore):
    """The artifact store of one bundle: its verification names the bundle and the fix."""

    def __init__(self, bundle: ModelBundle, allow_pickle: str) -> None:
        super().__init__(bundle.root, allow_pickle=allow_pickle)
        self.bundle = bundle

    def read_verified(self, stored: StoredArtifact) -> bytes:
        art = self.bundle.manifest["artifact"]
        key = self.bundle.key
        where = f"{self.bundle.root}/{art['path']}"
        export = f"`conveyor models export {key} DEST`"
        try:
            data = self.fs.cat_file(f"{self._base}/{art['path']}")
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"The model bundle of {key} at {self.bundle.root} is incomplete: {where} is "
                                         f"missing. Export it again with {export} and redeploy.") from None
        actual = digest(data)
        if actual != stored.content_hash:
            raise ArtifactIntegrityError(
                f"The model bundle of {key} was refused: {where} hashes to {actual} ({len(data)} bytes) but its "
                f"manifest records {stored.content_hash} ({stored.size} bytes). The bytes were changed or damaged "
                f"after export, and were not loaded. Export the bundle again with {export} and redeploy it.")
        return data


def load_bundle(bundle: ModelBundle, *, allow_pickle: str) -> LoadedModel:
    """The model of ``bundle`` in memory: hash verified first, pickles only where ``allow_pickle`` trusts the source.

    A bundle unpacked from a remote ``model.tar.gz`` keeps its remote origin: under ``local`` its
    pickles stay refused, as they would be read straight from the bucket.
    """
    policy = "false" if allow_pickle == "local" and bundle.remote else allow_pickle
    store = _BundleStore(bundle, policy)
    stored = bundle.stored()
    model = store.get(stored)
    if not hasattr(model, "predict"):
        raise InvalidRequest(f"The model bundle of {bundle.key} holds a {stored.type_name or type(model).__name__}, "
                             "which has no predict method. Register the fitted model object.", field="model")
    return LoadedModel(bundle.key, model, bundle.signature, size_bytes=stored.size,
                       extra={"bundle": bundle.root, "flavor": bundle.manifest.get("flavor")})
