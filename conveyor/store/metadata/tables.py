"""The metadata schema (SQLAlchemy Core). Changes go through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table,
                        Text, UniqueConstraint)

metadata = MetaData()

pipelines = Table(
    "pipelines", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("ref", String(1000)),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "code_hash", name="uq_pipeline_code"),
)

environments = Table(
    "environments", metadata,
    Column("hash", String(64), primary_key=True),
    Column("data", JSON, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200)),
    Column("kind", String(20), nullable=False, default="pipeline"),   # pipeline | tracking
    Column("pipeline_id", String(32), ForeignKey("pipelines.id")),
    Column("pipeline_name", String(200)),
    Column("pipeline_ref", String(1000)),
    Column("status", String(20), nullable=False),
    Column("parameters", JSON),
    Column("tags", JSON),
    Column("environment_hash", String(64), ForeignKey("environments.hash")),
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("options", JSON),
    Column("error", Text),
    Column("pid", Integer),
    Column("host", String(200)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
)
Index("ix_runs_created", runs.c.created_at)

run_events = Table(
    "run_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("detail", Text),
)
Index("ix_run_events_run", run_events.c.run_id)

step_runs = Table(
    "step_runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(300), nullable=False),          # node name, e.g. train_2 or train[3]
    Column("step", String(200), nullable=False),          # the step's declared name
    Column("map_index", Integer),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cache_key", String(64)),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("cached_from", String(32)),
    Column("code_hash", String(64)),
    Column("error", Text),
    Column("traceback", Text),
    Column("logs", Text),
    Column("reason", Text),
    Column("started_at", Float),
    Column("ended_at", Float),
)
Index("ix_step_runs_run", step_runs.c.run_id)
Index("ix_step_runs_cache", step_runs.c.cache_key, step_runs.c.status)

artifacts = Table(
    "artifacts", metadata,
    Column("id", String(32), primary_key=True),
    Column("content_hash", String(80), nullable=False),
    Column("materializer", String(100), nullable=False),
    Column("materializer_version", String(20), nullable=False),
    Column("type_name", String(300)),
    Column("size", BigInteger),
    Column("uri", String(1000)),
    Column("inline", JSON),
    Column("meta", JSON),
    Column("name", String(300)),
    Column("run_id", String(32)),
    Column("step_run_id", String(32)),
    Column("created_at", Float, nullable=False),
)
Index("ix_artifacts_hash", artifacts.c.content_hash)
Index("ix_artifacts_step_run", artifacts.c.step_run_id)

lineage = Table(
    "lineage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("artifact_id", String(32), ForeignKey("artifacts.id", ondelete="CASCADE"), nullable=False),
    Column("step_run_id", String(32), ForeignKey("step_runs.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("direction", String(6), nullable=False),       # input | output
    Column("name", String(300), nullable=False),          # input name or output name
    Column("position", Integer),                          # index inside a list input
)
Index("ix_lineage_artifact", lineage.c.artifact_id)
Index("ix_lineage_step", lineage.c.step_run_id)

metrics = Table(
    "metrics", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step_run_id", String(32)),
    Column("key", String(250), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", Integer),
    Column("at", Float, nullable=False),
)
Index("ix_metrics_run", metrics.c.run_id)

params = Table(
    "params", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step_run_id", String(32)),
    Column("key", String(250), nullable=False),
    Column("value", JSON),
)
Index("ix_params_run", params.c.run_id)
