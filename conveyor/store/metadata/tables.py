"""The metadata schema (SQLAlchemy Core). Changes go through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import false
from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData,
                        PrimaryKeyConstraint, String, Table, Text, UniqueConstraint)

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
    Column("cache_parts", JSON),                          # the key's components, to explain a later miss
    Column("error", Text),
    Column("traceback", Text),
    Column("logs", Text),
    Column("reason", Text),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("preemptions", Integer),                       # attempts ended by SIGTERM (0006), not failures
    # what the step run's one attempt used when it completed the first time (0007): the common case,
    # written with the update of the step's end instead of a step_attempts row (steps.inline_attempt)
    *[Column(f"used_{name}", kind) for name, kind in (
        ("executor", String(20)), ("host", String(200)), ("started_at", Float), ("ended_at", Float),
        ("wall_s", Float), ("cpu_s", Float), ("peak_rss_bytes", BigInteger), ("bytes_read", BigInteger),
        ("bytes_written", BigInteger), ("gpu_s", Float), ("gpu_peak_bytes", BigInteger))],
)
Index("ix_step_runs_run", step_runs.c.run_id)
Index("ix_step_runs_cache", step_runs.c.cache_key, step_runs.c.status)

# one row per attempt of a step run: what it used (0006). Measures are None where unknown. Keyed by
# (step run, attempt) with no other index, and on SQLite without a rowid (0007); a run's attempts are
# found through ix_step_runs_run. A step run whose only attempt completed has no row here: its
# measures are the step run's used_* columns (readers take both, through steps.attempt_sources).
step_attempts = Table(
    "step_attempts", metadata,
    Column("step_run_id", String(32), ForeignKey("step_runs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("status", String(20), nullable=False),          # completed | failed | preempted | timeout | cancelled
    Column("executor", String(20)),
    Column("host", String(200)),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("wall_s", Float),
    Column("cpu_s", Float),                                # user + system, children included
    Column("peak_rss_bytes", BigInteger),
    Column("bytes_read", BigInteger),                      # from the artifact store
    Column("bytes_written", BigInteger),
    Column("gpu_s", Float),
    Column("gpu_peak_bytes", BigInteger),
    Column("error", Text),
    PrimaryKeyConstraint("step_run_id", "attempt", name="pk_step_attempts"),
    sqlite_with_rowid=False,
)

# CPU a server spent per endpoint and model version, flushed per period (0006): cost per 1,000 requests
serving_usage = Table(
    "serving_usage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(200), nullable=False),
    Column("model", String(200)),
    Column("version", Integer),
    Column("period_start", Float, nullable=False),
    Column("period_end", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("cpu_s", Float, nullable=False),
    Column("wall_s", Float, nullable=False),
    Column("host", String(200)),
)
Index("ix_serving_usage_endpoint", serving_usage.c.endpoint, serving_usage.c.period_start)

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

# --- registry ---------------------------------------------------------------------------------

models = Table(
    "models", metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text),
    Column("protected_aliases", JSON, nullable=False),     # aliases whose moves need an approved version
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_id", String(32), ForeignKey("artifacts.id"), nullable=False),
    Column("run_id", String(32)),
    Column("step_run_id", String(32)),
    Column("metrics", JSON),
    Column("tags", JSON),
    Column("signature", JSON),
    Column("profile_artifact_id", String(32)),               # reference data profile for monitoring
    Column("approval", String(20), nullable=False),          # pending | approved | rejected
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    UniqueConstraint("model", "version", name="uq_model_version"),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200)),
)

alias_history = Table(
    "alias_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("version", Integer),                              # None: the alias was removed
    Column("at", Float, nullable=False),
    Column("actor", String(200)),
)
Index("ix_alias_history", alias_history.c.model, alias_history.c.alias)

approvals = Table(
    "approvals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("decision", String(20), nullable=False),          # approved | rejected
    Column("actor", String(200), nullable=False),
    Column("comment", Text),
    Column("at", Float, nullable=False),
)

roles = Table(
    "roles", metadata,
    Column("actor", String(200), primary_key=True),
    Column("role", String(50), primary_key=True),            # approver | admin
    Column("granted_at", Float, nullable=False),
    Column("granted_by", String(200)),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(50), nullable=False),
    Column("model", String(200)),
    Column("version", Integer),
    Column("alias", String(100)),
    Column("before", JSON),
    Column("after", JSON),
    Column("detail", Text),
)
Index("ix_audit_model", audit_log.c.model)

# --- serving ----------------------------------------------------------------------------------

endpoints = Table(
    "endpoints", metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", JSON, nullable=False),                    # routes, shadows, sticky header
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200)),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_id", String(32), primary_key=True),
    Column("secret_hash", String(128), nullable=False),
    Column("scope", String(20), nullable=False),
    Column("endpoint", String(200)),
    Column("rate_limit", Float),
    Column("description", Text),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    Column("revoked_at", Float),
    Column("actor", String(200)),                            # who a governance call with this key acts as (0004)
)

# one counter per kind of state that running servers watch ("serving"): bumped in the same
# transaction as an alias move or an endpoint change, so a poll is one tiny query.
state_versions = Table(
    "state_versions", metadata,
    Column("key", String(50), primary_key=True),
    Column("version", Integer, nullable=False),
)

# --- monitoring and automation (migration 0003) ---------------------------------------------------

monitors = Table(
    "monitors", metadata,
    Column("name", String(200), primary_key=True),
    Column("endpoint", String(200), nullable=False),
    Column("every_s", Float, nullable=False),
    Column("config", JSON, nullable=False),        # window, reference, drift_share, min_rows, metric, below, p99…
    Column("enabled", Boolean, nullable=False, default=True),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

monitor_checks = Table(
    "monitor_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(200), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("status", String(20), nullable=False),  # ok | alert | skipped | error
    Column("rows", Integer),
    Column("drift_share", Float),
    Column("metric", Float),
    Column("p99_ms", Float),
    Column("findings", JSON),                      # what breached, and why
)

alerts = Table(
    "alerts", metadata,
    Column("id", String(32), primary_key=True),
    Column("source", String(200), nullable=False, index=True),   # monitor name
    Column("key", String(400), nullable=False),                   # dedupe key: source + finding kinds
    Column("at", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON),
    Column("suppressed", Boolean, nullable=False, default=False),  # inside the cool-down of an equal alert
    Column("delivery", String(20), nullable=False, default="pending"),   # pending | delivered | failed | none
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
)

webhooks = Table(
    "webhooks", metadata,
    Column("name", String(200), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("sources", JSON),                        # monitor names, or null for all
    Column("created_at", Float, nullable=False),
)

schedules = Table(
    "schedules", metadata,
    Column("name", String(200), primary_key=True),
    Column("target", String(1000), nullable=False),  # FILE:PIPELINE
    Column("params", JSON),
    Column("cron", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("fresh", Boolean, nullable=False, default=False, server_default=false()),   # runs without the cache
)

triggers = Table(
    "triggers", metadata,
    Column("name", String(200), primary_key=True),
    Column("on_kind", String(20), nullable=False),   # monitor | data
    Column("on_value", String(1000), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("params", JSON),
    Column("max_concurrent", Integer, nullable=False, default=1),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("fresh", Boolean, nullable=False, default=False, server_default=false()),   # runs without the cache
)

firings = Table(
    "firings", metadata,
    Column("id", String(32), primary_key=True),
    Column("source_kind", String(20), nullable=False),   # schedule | trigger
    Column("source", String(200), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("cause", JSON),
    Column("status", String(20), nullable=False),        # pending | running | succeeded | failed | skipped
    Column("run_id", String(32)),
    Column("finished_at", Float),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),   # launches so far
    Column("launcher_pid", Integer),                  # the process that runs it, on ``launcher_host``
    Column("launcher_host", String(255)),
    Column("heartbeat_at", Float),                    # refreshed by the launcher while the run goes
)
Index("ix_firings_status_at", firings.c.status, firings.c.at)

seen_objects = Table(
    "seen_objects", metadata,
    Column("trigger", String(200), primary_key=True),
    Column("path", String(2000), primary_key=True),
    Column("at", Float, nullable=False),
)

# --- versioned datasets (migration 0005_datasets) ---------------------------------------------------

datasets = Table(
    "datasets", metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
)

dataset_versions = Table(
    "dataset_versions", metadata,
    Column("id", String(32), primary_key=True),
    Column("dataset", String(200), ForeignKey("datasets.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(80), nullable=False),     # the identity: same content, same version
    Column("kind", String(10), nullable=False),             # table | files
    Column("artifact_id", String(32), ForeignKey("artifacts.id"), nullable=False),  # the table, or the manifest
    Column("profile_artifact_id", String(32)),
    Column("schema", JSON),                                  # [{"name", "type", "nullable"}]
    Column("num_rows", BigInteger),
    Column("num_files", BigInteger),
    Column("size", BigInteger),
    Column("source", String(2000)),                          # where it was read from (no credentials)
    Column("run_id", String(32)),                            # the run that produced it first
    Column("step_run_id", String(32)),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    UniqueConstraint("dataset", "version", name="uq_dataset_version"),
    UniqueConstraint("dataset", "content_hash", name="uq_dataset_content"),
)

dataset_aliases = Table(
    "dataset_aliases", metadata,
    Column("dataset", String(200), ForeignKey("datasets.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200)),
)

# every run that produced (registered) or read a version
dataset_usage = Table(
    "dataset_usage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("role", String(10), nullable=False),              # produced | read
    Column("run_id", String(32)),
    Column("step_run_id", String(32)),
    Column("at", Float, nullable=False),
)
Index("ix_dataset_usage", dataset_usage.c.dataset, dataset_usage.c.version)
Index("ix_dataset_usage_run", dataset_usage.c.run_id)


# Incremental reads (0005): the position a data source reached, per pipeline. A row staged by a
# run counts only once that run succeeded; a row written outside a run is committed at once.
data_watermarks = Table(
    "data_watermarks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(200), nullable=False),
    Column("source", String(500), nullable=False),       # the watermark's key: a name, or the source's description
    Column("value", JSON),
    Column("run_id", String(32)),                        # the run that staged it (None: committed directly)
    Column("state", String(12), nullable=False),         # pending | committed
    Column("created_at", Float, nullable=False),
)
Index("ix_data_watermarks_key", data_watermarks.c.pipeline, data_watermarks.c.source)
