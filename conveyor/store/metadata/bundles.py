"""Records as plain data: read from one metadata store, written into another where absent.

A ``RecordBundle`` holds the rows a run's history spans (its pipeline version, environment, run
and events, step runs, artifacts, lineage, metrics and params) and, for a model version, the
registry's rows (the model and the version). It is JSON-able (``to_dict``/``from_dict``), so it
can travel between databases that never see each other, e.g. beside the artifacts it describes.

``Bundles.absorb`` writes a bundle in one transaction and inserts only what the destination lacks,
so absorbing the same bundle twice changes nothing the second time. Identities are kept: a run,
step run or artifact has the same id in both stores (ids are random, so a clash means the same
record). A pipeline version is matched by name and code hash; an environment by its hash; a model
by its name; a model version by its id, and it takes its source number when that number is free
at the destination, else the next one (the report says which). Events, lineage edges, metrics and
params come with the run or step run they belong to, when that one is new. An imported version
starts ``pending`` at the destination: approvals and aliases are decisions of each registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import Connection

from conveyor.errors import Conflict, InvalidRequest
from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now
from conveyor.store.metadata.models import audit

FORMAT = 1
# in the order rows are inserted (parents before children)
TABLES: tuple[str, ...] = ("pipelines", "environments", "runs", "run_events", "step_runs", "artifacts", "lineage",
                           "metrics", "params", "models", "model_versions")
# tables whose rows have an autoincrement id that means nothing in another database
_SERIAL = ("run_events", "lineage", "metrics", "params")


@dataclass(frozen=True, slots=True)
class RecordBundle:
    """Rows by table name, as plain JSON-able dicts."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])

    def with_artifacts(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> RecordBundle:
        """A copy whose artifact rows went through ``change`` (e.g. a URI on the destination store)."""
        return RecordBundle({**self.tables, "artifacts": [change(dict(r)) for r in self.rows("artifacts")]})

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "tables": {name: self.rows(name) for name in TABLES if self.rows(name)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordBundle:
        """Read what ``to_dict`` wrote; refuses a newer format and unknown tables."""
        if data.get("format") != FORMAT:
            raise InvalidRequest(f"This record bundle has format {data.get('format')!r}; this version of Conveyor "
                                 f"reads format {FORMAT}. Upgrade Conveyor where the bundle is imported.")
        unknown = set(data.get("tables", {})) - set(TABLES)
        if unknown:
            raise InvalidRequest(f"This record bundle has tables this version does not know: {', '.join(sorted(unknown))}.")
        return cls({name: [dict(r) for r in rows] for name, rows in data["tables"].items()})


@dataclass(frozen=True, slots=True)
class ImportedVersion:
    """A model version of a bundle as the destination registry holds it."""

    model: str
    source_version: int
    version: int
    new: bool                 # False: it was already there (nothing changed)

    @property
    def renumbered(self) -> bool:
        return self.version != self.source_version


@dataclass(frozen=True, slots=True)
class AbsorbReport:
    """Rows inserted per table (absent tables: none), and the model versions of the bundle."""

    inserted: dict[str, int]
    versions: list[ImportedVersion]


def _select_in(conn: Connection, table: Table, column: str, values: Iterable[Any]) -> list[dict[str, Any]]:
    wanted = sorted({v for v in values if v is not None})
    if not wanted:
        return []
    q = select(table).where(table.c[column].in_(wanted))
    if "id" in table.c:
        q = q.order_by(table.c.id)
    # str(): column names are SQLAlchemy's str subclass, which JSON encoders may refuse as keys
    return [{str(k): v for k, v in r.items()} for r in conn.execute(q).mappings()]


class Bundles(Repository):
    """Collects bundles from this store and absorbs bundles from others."""

    def collect(self, *, run_ids: Iterable[str] = (), artifact_ids: Iterable[str] = (),
                version_ids: Iterable[str] = ()) -> RecordBundle:
        """The rows of these runs (with everything their history names), artifacts and model versions.

        A model version brings its model, its artifact and profile, and the runs that produced them.
        """
        runs_wanted = set(run_ids)
        arts_wanted = set(artifact_ids)
        with self.read() as conn:
            versions = _select_in(conn, t.model_versions, "id", version_ids)
            arts_wanted |= {v["artifact_id"] for v in versions} | {v["profile_artifact_id"] for v in versions}
            runs_wanted |= {v["run_id"] for v in versions}
            for a in _select_in(conn, t.artifacts, "id", arts_wanted):
                runs_wanted.add(a["run_id"])
            runs = _select_in(conn, t.runs, "id", runs_wanted)
            run_set = [r["id"] for r in runs]
            steps = _select_in(conn, t.step_runs, "run_id", run_set)
            lineage = _select_in(conn, t.lineage, "step_run_id", [s["id"] for s in steps])
            arts_wanted |= {e["artifact_id"] for e in lineage}
            artifacts = _select_in(conn, t.artifacts, "id", arts_wanted)
            return RecordBundle({
                "pipelines": _select_in(conn, t.pipelines, "id", [r["pipeline_id"] for r in runs]),
                "environments": _select_in(conn, t.environments, "hash", [r["environment_hash"] for r in runs]),
                "runs": runs,
                "run_events": _select_in(conn, t.run_events, "run_id", run_set),
                "step_runs": steps,
                "artifacts": artifacts,
                "lineage": lineage,
                "metrics": _select_in(conn, t.metrics, "run_id", run_set),
                "params": _select_in(conn, t.params, "run_id", run_set),
                "models": _select_in(conn, t.models, "name", [v["model"] for v in versions]),
                "model_versions": versions,
            })

    def absorb(self, bundle: RecordBundle, *, actor: str, source: str | None = None) -> AbsorbReport:
        """Insert what this store lacks of ``bundle``, in one transaction; see the module's docstring.

        ``source`` names where the bundle came from, in the audit entry of each imported version.
        """
        inserted: dict[str, int] = {}

        def add(table: Table, rows: list[dict[str, Any]]) -> None:
            if rows:
                conn.execute(insert(table), rows)
                inserted[table.name] = inserted.get(table.name, 0) + len(rows)

        with self.write() as conn:
            pipeline_ids = self._pipelines(conn, bundle.rows("pipelines"), add)
            have_env = {r.hash for r in conn.execute(select(t.environments.c.hash).where(
                t.environments.c.hash.in_([e["hash"] for e in bundle.rows("environments")])))}
            add(t.environments, [e for e in bundle.rows("environments") if e["hash"] not in have_env])
            new_runs = self._absent(conn, t.runs, bundle.rows("runs"))
            add(t.runs, [{**r, "pipeline_id": pipeline_ids.get(r["pipeline_id"], r["pipeline_id"])}
                         for r in bundle.rows("runs") if r["id"] in new_runs])
            add(t.run_events, [self._unserial(r) for r in bundle.rows("run_events") if r["run_id"] in new_runs])
            new_steps = self._absent(conn, t.step_runs, bundle.rows("step_runs"))
            add(t.step_runs, [s for s in bundle.rows("step_runs") if s["id"] in new_steps])
            self._check_same_artifacts(conn, bundle.rows("artifacts"))
            new_arts = self._absent(conn, t.artifacts, bundle.rows("artifacts"))
            add(t.artifacts, [a for a in bundle.rows("artifacts") if a["id"] in new_arts])
            add(t.lineage, [self._unserial(e) for e in bundle.rows("lineage") if e["step_run_id"] in new_steps])
            bundle_steps = {s["id"] for s in bundle.rows("step_runs")}
            for table in (t.metrics, t.params):
                # a value logged by a step comes with that step run, one logged by the run with the run
                add(table, [self._unserial(r) for r in bundle.rows(table.name)
                            if (r["step_run_id"] in new_steps if r["step_run_id"] in bundle_steps
                                else r["run_id"] in new_runs)])
            for m in bundle.rows("models"):
                if conn.execute(select(t.models.c.name).where(t.models.c.name == m["name"])).first() is None:
                    add(t.models, [{**m, "created_at": now(), "created_by": actor}])
                    audit(conn, actor, "create_model", model=m["name"],
                          after={"protected_aliases": m["protected_aliases"]})
            versions = [self._version(conn, v, actor, source, add) for v in bundle.rows("model_versions")]
        return AbsorbReport(inserted, versions)

    @staticmethod
    def _unserial(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "id"}

    @staticmethod
    def _absent(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> set[str]:
        ids = [r["id"] for r in rows]
        if not ids:
            return set()
        present = {r.id for r in conn.execute(select(table.c.id).where(table.c.id.in_(ids)))}
        return set(ids) - present

    @staticmethod
    def _check_same_artifacts(conn: Connection, rows: list[dict[str, Any]]) -> None:
        ids = {r["id"]: r["content_hash"] for r in rows}
        if not ids:
            return
        for r in conn.execute(select(t.artifacts.c.id, t.artifacts.c.content_hash)
                              .where(t.artifacts.c.id.in_(list(ids)))):
            if r.content_hash != ids[r.id]:
                raise Conflict(f"Artifact {r.id} already exists at the destination with other content "
                               f"({r.content_hash}, not {ids[r.id]}); the two stores disagree about it. Nothing was "
                               "imported. Delete the run that holds it at the destination, then import again.")

    @staticmethod
    def _pipelines(conn: Connection, rows: list[dict[str, Any]], add: Callable[[Table, list[dict[str, Any]]], None]
                   ) -> dict[str, str]:
        """Map each pipeline version of the bundle onto the destination's (same name and code), adding it
        when new with its own number if free, else the next."""
        mapping: dict[str, str] = {}
        for p in rows:
            found = conn.execute(select(t.pipelines.c.id).where(t.pipelines.c.name == p["name"],
                                                                t.pipelines.c.code_hash == p["code_hash"])).scalar()
            if found is not None:
                mapping[p["id"]] = found
                continue
            taken = conn.execute(select(t.pipelines.c.version).where(t.pipelines.c.name == p["name"],
                                                                      t.pipelines.c.version == p["version"])).first()
            version = p["version"] if taken is None else (conn.execute(select(func.max(t.pipelines.c.version)).where(
                t.pipelines.c.name == p["name"])).scalar() or 0) + 1
            pid = p["id"] if conn.execute(select(t.pipelines.c.id).where(t.pipelines.c.id == p["id"])).first() is None \
                else new_id()
            add(t.pipelines, [{**p, "id": pid, "version": version}])
            mapping[p["id"]] = pid
        return mapping

    @staticmethod
    def _version(conn: Connection, v: dict[str, Any], actor: str, source: str | None,
                 add: Callable[[Table, list[dict[str, Any]]], None]) -> ImportedVersion:
        found = conn.execute(select(t.model_versions.c.version).where(t.model_versions.c.id == v["id"])).scalar()
        if found is not None:
            return ImportedVersion(v["model"], v["version"], found, new=False)
        taken = conn.execute(select(t.model_versions.c.id).where(t.model_versions.c.model == v["model"],
                                                                  t.model_versions.c.version == v["version"])).first()
        number = v["version"] if taken is None else (conn.execute(select(func.max(t.model_versions.c.version)).where(
            t.model_versions.c.model == v["model"])).scalar() or 0) + 1
        add(t.model_versions, [{**v, "version": number, "approval": "pending", "deleted": False, "created_at": now(),
                                "created_by": actor}])
        audit(conn, actor, "copy", model=v["model"], version=number,
              after={"artifact_id": v["artifact_id"], "run_id": v["run_id"], "metrics": v["metrics"]},
              detail=f"copied from {source or 'another store'} as {v['model']}:{v['version']}"
                     + (f"; version {v['version']} was taken here" if number != v["version"] else ""))
        return ImportedVersion(v["model"], v["version"], number, new=True)
