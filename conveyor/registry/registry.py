"""The model registry: versions, aliases, approvals, rollback, lineage and the audit log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from conveyor.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from conveyor.registry.refs import ModelRef, check_actor, check_alias, check_name, parse_ref
from conveyor.store.metadata import AuditRecord, NewArtifact, StepOutcome, VersionRecord

DEFAULT_PROTECTED = ["production"]
ROLES = ("approver", "admin")

# The one table of who may do what. An admin may do everything; an action missing here needs no role
# (registering, moving an unprotected alias). Moving a protected alias needs no role but an approved
# target version, whoever moves it and however (alias, rollback, promotion).
POLICY: dict[str, str] = {
    "grant": "admin",
    "revoke": "admin",
    "protect": "admin",
    "delete": "admin",
    "issue_key": "admin",             # an API key that acts as an actor (governance over HTTP)
    "approve": "approver",
    "reject": "approver",
    "unalias_protected": "approver",  # taking a protected alias away stops what serves it
}

# how the refusal names an action, where its key is not plain words
ACTION_WORDS = {"issue_key": "issue a key that acts as an actor", "unalias_protected": "remove a protected alias"}

log = logging.getLogger("conveyor.registry")


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
            except Exception as exc:   # a model that cannot predict on its training frame still gets a data profile
                log.warning("The reference profile has no predictions: %s.predict on the training data raised "
                            "%s: %s. Monitoring will compare inputs only.", type(model).__name__,
                            type(exc).__name__, exc)
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
        self._check_alias_target(name, alias, target)
        return self.models.move_alias(name, alias, version, self.actor, action=action, detail=detail)

    def _check_alias_target(self, name: str, alias: str, target: VersionRecord) -> None:
        """The one approval gate of a protected alias, for every way an alias moves."""
        if alias in self.protected_aliases(name) and target.approval != "approved":
            state = "was rejected" if target.approval == "rejected" else "is not approved"
            raise PermissionDenied(
                f"Alias '{alias}' of model '{name}' is protected and version {target.version} {state}: it must be "
                f"approved first (`conveyor models approve {name}:{target.version}` by an actor with the approver "
                "role).")

    def remove_alias(self, name: str, alias: str) -> None:
        """Delete an alias; a protected one needs the approver role (what it served stops)."""
        if alias not in self.models.aliases(name):
            raise NotFound(f"Model '{name}' has no alias '{alias}'.")
        if alias in self.protected_aliases(name):
            self.authorize("unalias_protected")
        self.models.move_alias(name, alias, None, self.actor, action="unalias")

    def roles(self) -> set[str]:
        """The roles of the acting actor."""
        return self.models.roles_of(self.actor)

    def authorize(self, action: str) -> None:
        """Raise PermissionDenied unless the actor holds the role ``POLICY`` names for ``action``."""
        role = POLICY.get(action)
        if role is None:
            return
        roles = self.roles()
        if role in roles or "admin" in roles:
            return
        if not self.models.admins():
            raise PermissionDenied(
                f"'{action}' needs the {role} role and this store has no admin yet. Name the first admin "
                "explicitly with `conveyor init --admin NAME`; that admin then grants roles with "
                "`conveyor models grant ACTOR --role ROLE`.")
        raise PermissionDenied(
            f"Actor '{self.actor}' lacks the {role} role needed to {ACTION_WORDS.get(action, action)}. An admin grants it "
            f"with `conveyor models grant {self.actor} --role {role}`. CONVEYOR_ACTOR only names who acts; on a "
            "shared store act through the server's governance API with a key that carries your actor.")

    def approve(self, ref: str, comment: str | None = None) -> VersionRecord:
        """Approve a version (approver role)."""
        version = self.resolve(ref)
        self.authorize("approve")
        self.models.decide(version.model, version.version, "approved", self.actor, comment)
        return self.resolve(ModelRef(version.model, version=version.version))

    def reject(self, ref: str, comment: str | None = None) -> VersionRecord:
        """Reject a version (approver role); a version holding a protected alias cannot be rejected."""
        version = self.resolve(ref)
        self.authorize("reject")
        for alias in version.aliases:
            if alias in self.protected_aliases(version.model):
                raise Conflict(f"{version.model}:{version.version} holds protected alias '{alias}'. "
                               f"Move or roll back the alias first.")
        self.models.decide(version.model, version.version, "rejected", self.actor, comment)
        return self.resolve(ModelRef(version.model, version=version.version))

    @staticmethod
    def _check_role(role: str) -> str:
        if role not in ROLES:
            raise InvalidRequest(f"Role {role!r} is not known. Roles: {', '.join(ROLES)}.", field="role")
        return role

    def grant(self, actor: str, role: str) -> None:
        """Give ``actor`` a role (admin only; the first admin comes from ``bootstrap_admin``)."""
        self._check_role(role)
        check_actor(actor)
        self.authorize("grant")
        self.models.grant(actor, role, self.actor)

    def revoke(self, actor: str, role: str) -> None:
        """Take a role away (admin only); the last admin cannot be removed."""
        self._check_role(role)
        self.authorize("revoke")
        if role not in self.models.roles_of(actor):
            raise NotFound(f"Actor '{actor}' does not hold the {role} role. See `conveyor models roles`.")
        if role == "admin" and self.models.admins() == [actor]:
            raise Conflict(f"'{actor}' is the last admin; grant admin to someone else before revoking it.")
        self.models.revoke(actor, role, self.actor)

    def bootstrap_admin(self, actor: str) -> bool:
        """Name the first admin of a store that has none; True when granted, False when ``actor``
        already is admin. Refused once another admin exists (an admin grants the next ones)."""
        check_actor(actor)
        admins = self.models.admins()
        if actor in admins:
            return False
        if admins:
            raise Conflict(f"This store already has an admin ({', '.join(admins)}). An admin grants the role with "
                           f"`conveyor models grant {actor} --role admin`.")
        if not self.models.bootstrap_admin(actor, self.actor):
            raise Conflict("Another process named an admin at the same moment; see `conveyor models roles`.")
        return True

    def role_grants(self) -> list[tuple[str, str]]:
        """Every (actor, role) granted in this store."""
        return self.models.role_grants()

    def set_protected(self, name: str, aliases: list[str]) -> None:
        """Set which aliases of a model need an approved version (admin role)."""
        self.resolve(ModelRef(name))
        self.authorize("protect")
        self.models.set_protected(name, [check_alias(a) for a in aliases], self.actor)

    def rollback(self, name: str, alias: str = "production") -> tuple[int, int]:
        """Move ``alias`` back to the version it held before its last move; returns (from, to).

        The version rolled back onto passes the same gate as any move of the alias: a protected alias
        only ever points at an approved version."""
        history = [v for v, _at, _by in self.models.alias_history(name, alias)]
        current = self.models.aliases(name).get(alias)
        if current is None or len(history) < 2:
            raise Conflict(f"Alias '{alias}' of '{name}' has no earlier version to roll back to.")
        previous = history[-2]
        if previous is None:
            raise Conflict(f"Alias '{alias}' of '{name}' did not exist before its last move.")
        target = self.models.version(name, previous)
        if target is None:
            raise Conflict(f"Alias '{alias}' of '{name}' held version {previous} before, which was deleted; point "
                           f"the alias at a version with `conveyor models alias {name}:VERSION {alias}`.")
        self._check_alias_target(name, alias, target)
        self.models.move_alias(name, alias, previous, self.actor, action="rollback",
                               detail=f"rolled back from version {current}")
        return current, previous

    def delete(self, ref: str) -> VersionRecord:
        """Soft-delete a version (admin role); refused while an alias or an endpoint still names it."""
        version = self.resolve(ref)
        self.authorize("delete")
        users = self.endpoints_using(version)      # first: the endpoint is what a user must change
        if users:
            first = users[0]
            raise Conflict(
                f"{version.model}:{version.version} is served by endpoint "
                + ", ".join(f"'{e}' ({how} {r})" for e, how, r in users)
                + f". Change the endpoint first (`conveyor endpoints update {first[0]} --model ...` without it, "
                f"or `conveyor endpoints delete {first[0]}`), then delete the version.")
        if version.aliases:
            raise Conflict(f"{version.model}:{version.version} is still aliased as {', '.join(version.aliases)}. "
                           "Move those aliases first.")
        self.models.delete_version(version.model, version.version, self.actor)
        return version

    def endpoints_using(self, version: VersionRecord) -> list[tuple[str, str, str]]:
        """(endpoint, "route"/"shadow", reference) for every endpoint reference that resolves to ``version``:
        directly (``m:3``), through an alias (``m@production``) or as the latest (``m``)."""
        found: list[tuple[str, str, str]] = []
        for rec in self.metadata.endpoints.list():
            refs = [("route", r["model"]) for r in rec.spec.get("routes", [])]
            refs += [("shadow", s) for s in rec.spec.get("shadows", [])]
            for how, text in refs:
                try:
                    target = self.resolve(text)
                except (NotFound, InvalidRequest):
                    continue   # a reference that already resolves to nothing cannot hold this version
                if (target.model, target.version) == (version.model, version.version):
                    found.append((rec.name, how, text))
        return found

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

    def produced_by(self, name: str, run_id: str) -> list[VersionRecord]:
        """The versions of ``name`` that run ``run_id`` registered, or that the steps it reused from
        the cache registered when they ran (a cached training step registers nothing anew)."""
        steps = self.metadata.steps.for_run(self.metadata.runs.get(run_id).id)
        makers = {s.id for s in steps} | {s.cached_from for s in steps if s.cached_from}
        return [v for v in self.versions(name) if v.step_run_id in makers or (v.run_id == run_id)]

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
