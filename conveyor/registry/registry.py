"""The model registry: versions, aliases, approvals, rollback, lineage and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from conveyor.registry.refs import ModelRef, check_alias, check_name, parse_ref
from conveyor.store.metadata import AuditRecord, NewArtifact, StepOutcome, VersionRecord

DEFAULT_PROTECTED = ["production"]
ROLES = ("approver", "admin")


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a model version came from."""

    version: VersionRecord
    run: dict[str, Any] | None
    steps: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    environment: dict[str, Any]


class ModelRegistry:
    """Registry operations with their policy; ``actor`` is who acts (settings.actor by default)."""

    def __init__(self, metadata: Any, artifacts: Any, actor: str) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.actor = actor
        self.models = metadata.models

    # --- registering --------------------------------------------------------------------------

    def register(self, name: str, model: Any = None, *, artifact_id: str | None = None, stored: Any = None,
                 metrics: dict[str, float] | None = None, tags: dict[str, Any] | None = None,
                 signature: dict[str, Any] | None = None, data: Any = None, target: Any = None,
                 run_id: str | None = None,
                 step_run_id: str | None = None) -> VersionRecord:
        """Register a model object (stored now), a stored artifact, or an existing artifact id."""
        check_name(name)
        profile = self._profile(model, data, target) if data is not None else None
        to_record: list[tuple[Any, str]] = []
        if artifact_id is None:
            if stored is None:
                if model is None:
                    raise InvalidRequest("register needs a model, a stored artifact or an artifact id.")
                stored = self.artifacts.put(model)
            to_record.append((stored, f"model/{name}"))
        else:
            self.metadata.artifacts.get(artifact_id)
        if profile is not None:
            to_record.append((self.artifacts.put(profile), f"profile/{name}"))
        ids = self._record_artifacts(to_record, name, run_id, step_run_id)
        if artifact_id is None:
            artifact_id = ids[0]
        profile_id = ids[-1] if profile is not None else None
        if signature is None and model is not None and data is not None:
            from conveyor.registry.signature import infer_signature

            signature = infer_signature(model, data)
        clean = {k: float(v) for k, v in (metrics or {}).items()}
        return self.models.add_version(name, artifact_id=artifact_id, actor=self.actor, run_id=run_id,
                                       step_run_id=step_run_id, metrics=clean, tags=dict(tags or {}),
                                       signature=signature, profile_artifact_id=profile_id,
                                       default_protected=list(DEFAULT_PROTECTED))

    @staticmethod
    def _profile(model: Any, data: Any, target: Any = None) -> dict[str, Any] | None:
        """The reference profile monitoring compares live traffic with: the training data and the
        model's predictions on it."""
        from conveyor.monitoring.profile import Profile

        predictions = None
        if model is not None and hasattr(model, "predict"):
            try:
                predictions = model.predict(data)
            except Exception:   # a model that cannot predict on its training frame still gets a data profile
                predictions = None
        return Profile.from_data(data, predictions=predictions, target=target).to_dict()

    def _record_artifacts(self, items: list[tuple[Any, str]], name: str, run_id: str | None,
                          step_run_id: str | None) -> list[str]:
        arts = [NewArtifact(name=label, content_hash=st.content_hash, materializer=st.materializer,
                            materializer_version=st.materializer_version, type_name=st.type_name, size=st.size,
                            uri=st.uri, inline=st.inline, meta=st.meta) for st, label in items]
        if not arts:
            return []
        if run_id is not None and step_run_id is not None:
            self.metadata.steps.add_outputs(step_run_id, run_id, arts)
            return [a.id for a in arts]
        if run_id is None:
            run_id = self.metadata.runs.create(kind="tracking", name=f"register {name}")
            self.metadata.runs.set_status(run_id, "succeeded")
        self.metadata.steps.record(run_id, "register", "register", StepOutcome(status="succeeded", new_outputs=arts))
        return [a.id for a in arts]

    def profile(self, ref: str | ModelRef) -> Any:
        """The reference profile stored with a version (a ``conveyor.monitoring.Profile``), or None."""
        from conveyor.monitoring.profile import Profile
        from conveyor.runtime.slots import stored_from_record

        version = self.resolve(ref)
        if not version.profile_artifact_id:
            return None
        data = self.artifacts.get(stored_from_record(self.metadata.artifacts.get(version.profile_artifact_id)))
        return Profile.from_dict(data)

    # --- resolving ----------------------------------------------------------------------------

    def resolve(self, ref: str | ModelRef) -> VersionRecord:
        """The version a reference names (``name`` alone is the latest)."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if self.models.model(r.name) is None:
            known = [m.name for m in self.models.models()]
            raise NotFound(f"No model '{r.name}'. Registered models: {', '.join(known) or '(none)'}.")
        number = r.version
        if r.alias is not None:
            aliases = self.models.aliases(r.name)
            if r.alias not in aliases:
                raise NotFound(f"Model '{r.name}' has no alias '{r.alias}'. Its aliases: "
                               f"{', '.join(f'{a}→{v}' for a, v in aliases.items()) or '(none)'}.")
            number = aliases[r.alias]
        if number is None:
            number = self.models.latest(r.name)
        found = self.models.version(r.name, number) if number is not None else None
        if found is None:
            raise NotFound(f"Model '{r.name}' has no version {number}. See `conveyor models show {r.name}`.")
        return found

    def load(self, ref: str | ModelRef) -> Any:
        """The model object of a version (hash verified before deserialising)."""
        from conveyor.runtime.slots import stored_from_record

        version = self.resolve(ref)
        return self.artifacts.get(stored_from_record(self.metadata.artifacts.get(version.artifact_id)))

    # --- aliases and approvals ----------------------------------------------------------------

    def protected_aliases(self, name: str) -> list[str]:
        row = self.models.model(name)
        return list(row.protected_aliases) if row else list(DEFAULT_PROTECTED)

    def set_alias(self, name: str, alias: str, version: int, *, action: str = "alias",
                  detail: str | None = None) -> int | None:
        """Point ``alias`` at ``version``. A protected alias needs that version approved."""
        check_alias(alias)
        target = self.resolve(ModelRef(name, version=version))
        if alias in self.protected_aliases(name) and target.approval != "approved":
            raise PermissionDenied(
                f"Alias '{alias}' of model '{name}' is protected: version {version} must be approved first "
                f"(`conveyor models approve {name}:{version}` by an actor with the approver role).")
        return self.models.move_alias(name, alias, version, self.actor, action=action, detail=detail)

    def remove_alias(self, name: str, alias: str) -> None:
        if alias not in self.models.aliases(name):
            raise NotFound(f"Model '{name}' has no alias '{alias}'.")
        self.models.move_alias(name, alias, None, self.actor, action="unalias")

    def _require_role(self, role: str) -> None:
        roles = self.models.roles_of(self.actor)
        if role not in roles and "admin" not in roles:
            raise PermissionDenied(
                f"Actor '{self.actor}' lacks the {role} role. An admin grants it with "
                f"`conveyor models grant {self.actor} --role {role}`; set CONVEYOR_ACTOR to act as someone else.")

    def approve(self, ref: str, comment: str | None = None) -> VersionRecord:
        version = self.resolve(ref)
        self._require_role("approver")
        self.models.decide(version.model, version.version, "approved", self.actor, comment)
        return self.resolve(ModelRef(version.model, version=version.version))

    def reject(self, ref: str, comment: str | None = None) -> VersionRecord:
        version = self.resolve(ref)
        self._require_role("approver")
        for alias in version.aliases:
            if alias in self.protected_aliases(version.model):
                raise Conflict(f"{version.model}:{version.version} holds protected alias '{alias}'. "
                               f"Move or roll back the alias first.")
        self.models.decide(version.model, version.version, "rejected", self.actor, comment)
        return self.resolve(ModelRef(version.model, version=version.version))

    def grant(self, actor: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidRequest(f"Role {role!r} is not known. Roles: {', '.join(ROLES)}.", field="role")
        self.models.grant(actor, role, self.actor)

    def set_protected(self, name: str, aliases: list[str]) -> None:
        self.resolve(ModelRef(name))
        self._require_role("admin")
        self.models.set_protected(name, [check_alias(a) for a in aliases], self.actor)

    def rollback(self, name: str, alias: str = "production") -> tuple[int, int]:
        """Move ``alias`` back to the version it held before its last move; returns (from, to)."""
        history = [v for v, _at, _by in self.models.alias_history(name, alias)]
        current = self.models.aliases(name).get(alias)
        if current is None or len(history) < 2:
            raise Conflict(f"Alias '{alias}' of '{name}' has no earlier version to roll back to.")
        previous = history[-2]
        if previous is None:
            raise Conflict(f"Alias '{alias}' of '{name}' did not exist before its last move.")
        self.models.move_alias(name, alias, previous, self.actor, action="rollback",
                               detail=f"rolled back from version {current}")
        return current, previous

    def delete(self, ref: str) -> VersionRecord:
        version = self.resolve(ref)
        if version.aliases:
            raise Conflict(f"{version.model}:{version.version} is still aliased as {', '.join(version.aliases)}. "
                           "Move those aliases first.")
        self.models.delete_version(version.model, version.version, self.actor)
        return version

    # --- reading ------------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        out = []
        for m in self.models.models():
            versions = self.models.versions(m.name)
            out.append({"name": m.name, "versions": len(versions), "latest": versions[-1].version if versions else None,
                        "aliases": self.models.aliases(m.name), "protected_aliases": m.protected_aliases})
        return out

    def versions(self, name: str) -> list[VersionRecord]:
        self.resolve(ModelRef(name))
        return self.models.versions(name)

    def audit(self, model: str | None = None, limit: int = 200) -> list[AuditRecord]:
        return self.models.audit_entries(model=model, limit=limit)

    def lineage(self, ref: str) -> Lineage:
        """The run, its steps, the inputs (with content hashes), the code version and the environment."""
        from conveyor.runtime.run import iso

        version = self.resolve(ref)
        md = self.metadata
        run = steps = None
        inputs: list[dict[str, Any]] = []
        env: dict[str, Any] = {}
        if version.run_id:
            rec = md.runs.get(version.run_id)
            run = {"id": rec.id, "pipeline": rec.pipeline_name or rec.name, "status": rec.status,
                   "parameters": rec.parameters, "git_commit": rec.git_commit, "git_dirty": rec.git_dirty,
                   "pipeline_version": self._pipeline_version(rec.pipeline_id), "started": iso(rec.started_at)}
            env = md.runs.environment(rec.environment_hash) if rec.environment_hash else {}
            steps = [{"name": s.name, "status": s.status, "cache_hit": s.cache_hit} for s in md.steps.for_run(rec.id)]
            seen: set[str] = set()
            for s in md.steps.for_run(rec.id):
                for e in md.artifacts.step_edges(s.id):
                    if e.direction == "input" and e.artifact_id not in seen:
                        seen.add(e.artifact_id)
                        a = md.artifacts.get(e.artifact_id)
                        inputs.append({"step": s.name, "input": e.name, "artifact": a.id,
                                       "content_hash": a.content_hash, "type": a.type_name})
        return Lineage(version=version, run=run, steps=steps or [], inputs=inputs,
                       environment={k: v for k, v in env.items() if k != "packages"} |
                       ({"packages": len(env["packages"])} if "packages" in env else {}))

    def _pipeline_version(self, pipeline_id: str | None) -> dict[str, Any] | None:
        if not pipeline_id:
            return None
        from sqlalchemy import select

        from conveyor.store.metadata import tables as t

        with self.metadata.engine.connect() as conn:
            row = conn.execute(select(t.pipelines).where(t.pipelines.c.id == pipeline_id)).first()
        return {"name": row.name, "version": row.version, "code_hash": row.code_hash} if row else None
