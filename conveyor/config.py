"""Settings: every ``CONVEYOR_*`` variable is read here, once, and nowhere else.

Precedence: explicit arguments > environment variables > ``conveyor.toml`` in the
working directory (table ``[conveyor]``) > defaults.

==============================  ========================================  ==============================
variable                        meaning                                   default
==============================  ========================================  ==============================
``CONVEYOR_HOME``               folder for the embedded stores            ``./.conveyor``
``CONVEYOR_METADATA_URL``       any SQLAlchemy URL                        ``sqlite:///$HOME/metadata.db``
``CONVEYOR_ARTIFACT_ROOT``      fsspec URL (file, s3, gs, az, memory)     ``$HOME/artifacts``
``CONVEYOR_EXECUTOR``           ``thread``, ``process`` or ``dask``       ``thread``
``CONVEYOR_EXECUTOR``           ``thread``, ``process`` or ``ray``        ``thread``
``CONVEYOR_MAX_WORKERS``        parallel steps in the local executor      CPU count (at least 2)
``CONVEYOR_INLINE_MAX_BYTES``   JSON values up to this size stay inline   ``65536``
``CONVEYOR_ARTIFACT_RETRIES``   retries of a remote artifact I/O error    ``4``
``CONVEYOR_ARTIFACT_BACKOFF_S`` first wait between them (doubles, ≤ 8 s)  ``0.5``
``CONVEYOR_METADATA_RETRIES``   reconnects to a database server (PG)      ``4``
``CONVEYOR_METADATA_BACKOFF_S`` first wait between them (doubles, ≤ 8 s)  ``0.25``
``CONVEYOR_ACTOR``              who is acting (audit log, approvals)      the OS user name
``CONVEYOR_SERVE_MEMORY_MB``    model cache cap of one server process     ``2048``
``CONVEYOR_DEFAULT_ENDPOINT``   endpoint for paths that name none         the only endpoint, if one
``CONVEYOR_DEBUG``              ``1``: the CLI prints tracebacks too      off
``CONVEYOR_AGENT_HEARTBEAT_S``  a firing whose launcher is silent this    ``60``
                                long is dead (reset and retried)
``CONVEYOR_AGENT_MAX_ATTEMPTS`` launches of a firing before it fails      ``3``
``CONVEYOR_ALLOW_PICKLE``       load artifacts whose loading runs code    ``local``
                                (pickle, joblib, skops types outside the
                                allow-list): ``local`` = only from a
                                local artifact root, ``true``, ``false``
``CONVEYOR_SERVE_MAX_BODY_BYTES`` largest request body (413 beyond)       ``33554432`` (32 MiB)
``CONVEYOR_SERVE_MAX_IN_FLIGHT``  requests a worker admits at once (503)  ``64``
``CONVEYOR_SERVE_LOG_MAX_ROWS``   prediction-log rows held in memory:     ``500000``
                                the most a SIGKILL can lose (per worker)
``CONVEYOR_SERVE_LOG_INTERVAL_S`` prediction-log flush interval (seconds) ``2``
``CONVEYOR_SERVE_USAGE_INTERVAL_S`` how often a server writes its CPU and  ``60``
                                request counts per endpoint and version
                                to ``serving_usage``; ``0``: not counted
``CONVEYOR_ACCOUNTING``         ``0``: do not measure step attempts nor   on
                                write ``step_attempts`` rows
``CONVEYOR_PREEMPT_GRACE_S``    seconds a step gets after its worker's    ``30``
                                SIGTERM before its attempt is stopped as
                                preempted
``CONVEYOR_PREEMPTION_RETRIES`` preempted attempts of one step call that  ``3``
                                are run again (apart from ``retries``)
``DASK_SCHEDULER_ADDRESS``      the Dask scheduler ``CONVEYOR_EXECUTOR=   a local cluster started once
                                dask`` connects to (``tcp://host:8786``)  per process
``CONVEYOR_RAY_ADDRESS``        the Ray cluster (``host:port``, ``auto``,  ``RAY_ADDRESS``
                                ``ray://…``; ``local`` starts one here)
``CONVEYOR_RAY_SHARED_ROOT``    ``1``: a local-folder artifact root is    off
                                mounted at the same path on every node
``CONVEYOR_RAY_RUNTIME_ENV``    JSON merged into every task's Ray          none
                                runtime environment (``pip``, ``env_vars``)
``CONVEYOR_RAY_ENV_VARS``       this process's variables Ray tasks get     none
                                too: names or globs, comma-separated
``CONVEYOR_PRICES``             the price table cost estimates use: a     the package's
                                YAML file shaped like the shipped one     ``cost/prices.yaml``
``AIP_HTTP_PORT``               Vertex AI: the port to listen on          ``8080``
``AIP_PREDICT_ROUTE``           Vertex AI: the prediction path            ``/predict``
``AIP_HEALTH_ROUTE``            Vertex AI: the health path                ``/health``
==============================  ========================================  ==============================

The serving container (``conveyor serve-container``) reads what each cloud sets, as it sets it
(``load_container_settings``): ``SAGEMAKER_BIND_TO_PORT``, ``AIP_MODE``, ``AIP_HTTP_PORT``,
``AIP_STORAGE_URI``, ``AZUREML_MODEL_DIR``, ``PORT`` (Knative, KServe), and
``CONVEYOR_MODEL_URI``, the bundle baked into the image, served where the platform names none.
"""

from __future__ import annotations

import getpass
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from conveyor.errors import ConfigurationError

EXECUTORS = ("thread", "process")   # executors shipped with Conveyor (conveyor.executors.registry)
EXECUTORS += ("dask",)              # a distributed engine, with the extra `conveyor[dask]`
EXECUTORS += ("ray",)               # a Ray cluster, with the extra `conveyor[ray]`
PICKLE_POLICIES = ("local", "true", "false")


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed, resolved settings."""

    home: Path
    metadata_url: str
    artifact_root: str
    executor: str = "thread"
    max_workers: int = 4
    inline_max_bytes: int = 65536
    actor: str = "unknown"
    serve_memory_mb: int = 2048
    default_endpoint: str | None = None
    aip_http_port: int | None = None
    serve_max_body_bytes: int = 32 << 20
    serve_max_in_flight: int = 64
    serve_log_max_rows: int = 500_000
    serve_log_interval_s: float = 2.0
    serve_log_writer: str = "process"     # "process": encode the prediction log off the serving process
    serve_usage_interval_s: float = 60.0   # 0: the server keeps no usage
    serve_compiled_predict: bool = True    # linear scikit-learn models answered with NumPy (serving/compiled.py)
    aip_predict_route: str = "/predict"
    aip_health_route: str = "/health"
    agent_heartbeat_s: float = 60.0
    agent_max_attempts: int = 3
    allow_pickle: str = "local"
    artifact_retries: int = 4
    artifact_backoff_s: float = 0.5
    metadata_retries: int = 4
    metadata_backoff_s: float = 0.25
    ray_address: str | None = None
    dask_scheduler_address: str | None = None
    ray_shared_root: bool = False
    ray_runtime_env: str = ""          # a JSON object (checked here), merged into every task's runtime env
    ray_env_vars: tuple[tuple[str, str], ...] = ()   # (name, value) of the variables CONVEYOR_RAY_ENV_VARS names
    ray_batch_idle_s: float = 600.0    # batch scorers on Ray outlive the command this long idle; 0: they end with it
    prices: str | None = None          # a price table file (CONVEYOR_PRICES); None: the shipped one
    accounting: bool = True
    preempt_grace_s: float = 30.0
    preemption_retries: int = 3

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)


def _read_toml(cwd: Path) -> dict[str, object]:
    path = cwd / "conveyor.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}. Fix the file or remove it.") from exc
    table = data.get("conveyor", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [conveyor] must be a table.")
    return table


def _int(name: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number.") from None
    if value < 0:
        raise ConfigurationError(f"{name}={raw!r} must not be negative.")
    return value


def _seconds(name: str, raw: object, *, zero: bool = False) -> float:
    """A number of seconds: more than 0 (or, with ``zero``, at least 0, e.g. a backoff)."""
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds.") from None
    if not (value >= 0 if zero else value > 0):
        raise ConfigurationError(f"{name}={raw!r} must be {'0 or more' if zero else 'more than 0'} seconds.")
    return value


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def load_settings(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Resolve settings from the environment and ``conveyor.toml``."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    toml = _read_toml(cwd)

    def get(key: str, default: object = None) -> object:
        return env.get(f"CONVEYOR_{key.upper()}", toml.get(key, default))

    home = Path(str(get("home", ".conveyor"))).expanduser()
    if not home.is_absolute():
        home = (cwd / home).resolve()
    metadata_url = str(get("metadata_url", f"sqlite:///{home / 'metadata.db'}"))
    artifact_root = str(get("artifact_root", str(home / "artifacts")))
    executor = str(get("executor", "thread"))
    if executor == "local":
        executor = "thread"
    if executor not in EXECUTORS:
        raise ConfigurationError(
            f"CONVEYOR_EXECUTOR={executor!r} is not known. Use one of: {', '.join(EXECUTORS)}."
        )
    workers = _int("CONVEYOR_MAX_WORKERS", get("max_workers", max(2, os.cpu_count() or 2)))
    inline = _int("CONVEYOR_INLINE_MAX_BYTES", get("inline_max_bytes", 65536))
    actor = str(get("actor", "") or _default_actor())
    memory = _int("CONVEYOR_SERVE_MEMORY_MB", get("serve_memory_mb", 2048))
    default_endpoint = get("default_endpoint")
    allow_pickle = str(get("allow_pickle", "local")).strip().lower()
    allow_pickle = {"1": "true", "yes": "true", "0": "false", "no": "false"}.get(allow_pickle, allow_pickle)
    if allow_pickle not in PICKLE_POLICIES:
        raise ConfigurationError(f"CONVEYOR_ALLOW_PICKLE={allow_pickle!r} is not known. Use local (pickles only "
                                 "from a local artifact root), true or false.")
    aip_port = env.get("AIP_HTTP_PORT")
    ray_address = str(get("ray_address", env.get("RAY_ADDRESS", "")) or "").strip() or None
    return Settings(home=home, metadata_url=metadata_url, artifact_root=artifact_root,
                    executor=executor, max_workers=max(1, workers), inline_max_bytes=inline,
                    actor=actor, serve_memory_mb=memory,
                    default_endpoint=str(default_endpoint) if default_endpoint else None,
                    aip_http_port=_int("AIP_HTTP_PORT", aip_port) if aip_port else None,
                    aip_predict_route=env.get("AIP_PREDICT_ROUTE", "/predict"),
                    aip_health_route=env.get("AIP_HEALTH_ROUTE", "/health"),
                    agent_heartbeat_s=_seconds("CONVEYOR_AGENT_HEARTBEAT_S", get("agent_heartbeat_s", 60)),
                    agent_max_attempts=max(1, _int("CONVEYOR_AGENT_MAX_ATTEMPTS", get("agent_max_attempts", 3))),
                    allow_pickle=allow_pickle,
                    artifact_retries=_int("CONVEYOR_ARTIFACT_RETRIES", get("artifact_retries", 4)),
                    artifact_backoff_s=_seconds("CONVEYOR_ARTIFACT_BACKOFF_S", get("artifact_backoff_s", 0.5),
                                                zero=True),
                    metadata_retries=_int("CONVEYOR_METADATA_RETRIES", get("metadata_retries", 4)),
                    metadata_backoff_s=_seconds("CONVEYOR_METADATA_BACKOFF_S", get("metadata_backoff_s", 0.25),
                                                zero=True),
                    serve_max_body_bytes=max(1, _int("CONVEYOR_SERVE_MAX_BODY_BYTES",
                                                     get("serve_max_body_bytes", 32 << 20))),
                    serve_max_in_flight=max(1, _int("CONVEYOR_SERVE_MAX_IN_FLIGHT", get("serve_max_in_flight", 64))),
                    serve_log_max_rows=max(1, _int("CONVEYOR_SERVE_LOG_MAX_ROWS",
                                                   get("serve_log_max_rows", 500_000))),
                    serve_log_interval_s=_seconds("CONVEYOR_SERVE_LOG_INTERVAL_S",
                                                         get("serve_log_interval_s", 2.0)),
                    serve_log_writer=str(env.get("CONVEYOR_SERVE_LOG_WRITER")
                                         or get("serve_log_writer", "process")).strip().lower(),
                    serve_usage_interval_s=_seconds("CONVEYOR_SERVE_USAGE_INTERVAL_S",
                                                    get("serve_usage_interval_s", 60.0), zero=True),
                    serve_compiled_predict=_bool("CONVEYOR_SERVE_COMPILED_PREDICT", get("serve_compiled_predict", True)),
                    dask_scheduler_address=str(env.get("DASK_SCHEDULER_ADDRESS", "")).strip() or None,
                    ray_address=ray_address,
                    ray_shared_root=_bool("CONVEYOR_RAY_SHARED_ROOT", get("ray_shared_root", False)),
                    ray_runtime_env=_json_table("CONVEYOR_RAY_RUNTIME_ENV", get("ray_runtime_env", "")),
                    ray_env_vars=_named_variables(env, str(get("ray_env_vars", "") or "")),
                    ray_batch_idle_s=_seconds("CONVEYOR_RAY_BATCH_IDLE_S", get("ray_batch_idle_s", 600), zero=True),
                    prices=str(get("prices", "") or "").strip() or None,
                    accounting=_bool("CONVEYOR_ACCOUNTING", get("accounting", True)),
                    preempt_grace_s=_seconds("CONVEYOR_PREEMPT_GRACE_S", get("preempt_grace_s", 30)),
                    preemption_retries=_int("CONVEYOR_PREEMPTION_RETRIES", get("preemption_retries", 3)))


def _named_variables(env: Mapping[str, str], patterns: str) -> tuple[tuple[str, str], ...]:
    """The variables of ``env`` matching any of the comma-separated names or globs, sorted by name."""
    import fnmatch

    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return tuple(sorted((k, v) for k, v in env.items() if any(fnmatch.fnmatchcase(k, p) for p in wanted)))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _bool(name: str, raw: object) -> bool:
    """An on/off setting; anything but the usual spellings is an error rather than a silent default."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigurationError(f"{name}={raw!r} is not on or off. Use 1/true/yes/on or 0/false/no/off.")


def _json_table(name: str, raw: object) -> str:
    """A JSON object setting (or a TOML table) as canonical JSON text; empty when unset."""
    if isinstance(raw, dict):
        return json.dumps(raw, sort_keys=True)
    if not str(raw).strip():
        return ""
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{name} is not valid JSON ({exc}). Write an object such as "
                                 '\'{"env_vars": {"KEY": "value"}}\'.') from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name} must be a JSON object, got {type(value).__name__}.")
    return json.dumps(value, sort_keys=True)


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """``CONVEYOR_DEBUG=1`` (or true/yes/on): the CLI shows tracebacks, as ``conveyor --debug`` does."""
    env = os.environ if env is None else env
    return env.get("CONVEYOR_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    """What a cloud tells the serving container through its environment, read as that cloud sets it."""

    sagemaker_bind_to_port: int | None = None     # SAGEMAKER_BIND_TO_PORT (inference pipelines)
    sagemaker_env: bool = False                   # any SAGEMAKER_* variable a SageMaker host sets
    aip_mode: str | None = None                   # AIP_MODE=PREDICTION on Vertex AI
    aip_http_port: int | None = None
    aip_storage_uri: str | None = None            # gs:// copy of the model's artifactUri
    aip_predict_route: str | None = None
    aip_health_route: str | None = None
    azureml_model_dir: str | None = None          # AZUREML_MODEL_DIR: the mounted model
    port: int | None = None                       # PORT: Knative and KServe name the container port so
    model_uri: str | None = None                  # CONVEYOR_MODEL_URI: the image's own bundle (a path or URL)


def load_container_settings(env: Mapping[str, str] | None = None) -> ContainerSettings:
    """The serving container's view of its platform (``conveyor.serving.platforms`` decides from it)."""
    env = os.environ if env is None else env

    def port(name: str) -> int | None:
        raw = env.get(name, "").strip()
        if not raw:
            return None
        value = _int(name, raw)
        if not 0 < value < 65536:
            raise ConfigurationError(f"{name}={raw!r} is not a TCP port (1-65535).")
        return value

    return ContainerSettings(
        sagemaker_bind_to_port=port("SAGEMAKER_BIND_TO_PORT"),
        sagemaker_env=any(k in env for k in ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_SAFE_PORT_RANGE")),
        aip_mode=env.get("AIP_MODE") or None, aip_http_port=port("AIP_HTTP_PORT"),
        aip_storage_uri=env.get("AIP_STORAGE_URI") or None, aip_predict_route=env.get("AIP_PREDICT_ROUTE") or None,
        aip_health_route=env.get("AIP_HEALTH_ROUTE") or None, azureml_model_dir=env.get("AZUREML_MODEL_DIR") or None,
        port=port("PORT"), model_uri=env.get("CONVEYOR_MODEL_URI") or None)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where OpenTelemetry traces go: an OTLP/HTTP endpoint, or nowhere (no span is even made)."""

    endpoint: str | None = None        # CONVEYOR_OTEL_ENDPOINT, else OTEL's own variables
    service_name: str = "conveyor"     # OTEL_SERVICE_NAME


def load_tracing_settings(env: Mapping[str, str] | None = None) -> TracingSettings:
    """Tracing is on when an endpoint is named (``CONVEYOR_OTEL_ENDPOINT``, or OpenTelemetry's
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``), or when the process
    already installed a tracer provider of its own."""
    env = os.environ if env is None else env
    endpoint = (env.get("CONVEYOR_OTEL_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip() or None
    return TracingSettings(endpoint=endpoint, service_name=(env.get("OTEL_SERVICE_NAME") or "conveyor").strip())


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``CONVEYOR_LOG_FORMAT``: ``text`` (the default, for people) or ``json`` (one object a line, for collectors)."""
    env = os.environ if env is None else env
    value = env.get("CONVEYOR_LOG_FORMAT", "text").strip().lower() or "text"
    if value not in ("text", "json"):
        raise ConfigurationError(f"CONVEYOR_LOG_FORMAT={value!r} is not a log format. Use text or json.")
    return value
def read_secret(reference: str, env: Mapping[str, str] | None = None) -> str:
    """The value a secret reference points at: ``env:NAME`` (an environment variable) or
    ``file:PATH`` (a mounted secret, e.g. a Kubernetes Secret volume), trailing newline removed.

    The value is never part of an error message; only the reference is.
    """
    env = os.environ if env is None else env
    scheme, sep, name = reference.partition(":")
    if not sep or not name or scheme not in ("env", "file"):
        raise ConfigurationError(f"Secret reference {reference!r} is not 'env:NAME' or 'file:PATH'. "
                                 "Name the environment variable or the mounted file that holds the secret.")
    if scheme == "env":
        value = env.get(name)
        if not value:
            raise ConfigurationError(f"The environment variable {name} (secret reference {reference!r}) is not set "
                                     "or empty. Export it in the environment that runs the pipeline.")
        return value
    try:
        return Path(name).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigurationError(f"The secret file {name} (secret reference {reference!r}) cannot be read: "
                                 f"{exc.strerror}. Mount the secret there or fix the path.") from None
