"""Every error Conveyor raises on purpose.

The tree::

    ConveyorError                     base; has ``exit_code`` and ``headline``
    ├── ConfigurationError            a setting or config file is wrong
    │   └── SchemaError               a data schema (YAML or Python) is malformed
    ├── PipelineDefinitionError       a pipeline or step is mis-declared (caught at build time)
    │   └── ParameterError            a pipeline parameter is missing, unknown or ill-typed
    ├── StepFailed                    a step raised after its retries
    ├── QualityGateFailed             a step's check rejected a result (raised by user steps)
    │   └── ValidationFailed          data broke a schema constraint whose policy is ``fail``
    ├── StepTimeout                   one attempt of a step ran longer than its ``timeout``
    ├── StepPreempted                 a step's worker was told to stop (SIGTERM); the attempt ends ``preempted``
    ├── RunCancelled                  a run was interrupted (Ctrl-C, SIGTERM)
    ├── ArtifactError
    │   ├── ArtifactIntegrityError    bytes on disk do not match the recorded hash
    │   ├── MaterializerNotFound      no materializer can store or load a value
    │   ├── ArtifactUntrusted         loading would run code from the artifact, and that is not allowed
    │   └── ArtifactStoreUnavailable  the object store stayed unreachable through every retry
    ├── StoreUnavailable              the metadata database is locked or unreachable
    ├── NotFound                      a run, artifact, model, endpoint… does not exist
    ├── Conflict                      the action clashes with current state
    ├── PermissionDenied              the actor lacks the role or scope
    ├── InvalidRequest                an input (HTTP body, file) does not match its schema
    │   └── PayloadTooLarge           a body beyond the server's size limit (413)
    ├── Unauthenticated               no key, or a key that matches none
    ├── RateLimited                   too many requests for a key
    ├── Unavailable                   overloaded, or an endpoint that cannot be served (503)
    ├── PredictionFailed              the model raised on a valid input (500)
    └── SourceReadError               a data source cannot be read (HTTP, database, stream, queue)

Library errors (SQLAlchemy, botocore, fsspec) are translated where the backend
starts, so the engine and the CLI only ever meet these.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""

    exit_code: int = 1
    headline: str = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(ConveyorError):
    """A setting, environment variable or config file is wrong."""

    exit_code = 2
    headline = "Configuration error"


class PipelineDefinitionError(ConveyorError):
    """A pipeline or step is declared wrongly; raised when the graph is built."""

    exit_code = 2
    headline = "Pipeline definition error"


class ParameterError(PipelineDefinitionError):
    """A pipeline parameter is missing, unknown or of the wrong type."""

    headline = "Parameter error"


class StepFailed(ConveyorError):
    """A step raised after all its retries."""

    exit_code = 3
    headline = "Step failed"

    def __init__(self, message: str, *, run_id: str | None = None, step: str | None = None,
                 traceback: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step
        self.traceback = traceback


class RunCancelled(ConveyorError):
    """A run was interrupted and marked cancelled."""

    exit_code = 130
    headline = "Run cancelled"


class ArtifactError(ConveyorError):
    """Base for artifact storage problems."""

    exit_code = 4
    headline = "Artifact error"


class ArtifactIntegrityError(ArtifactError):
    """Stored bytes do not match the hash recorded when they were written."""

    headline = "Artifact integrity error"


class MaterializerNotFound(ArtifactError):
    """No registered materializer can handle a value or a stored artifact."""

    headline = "No materializer"


class ArtifactStoreUnavailable(ArtifactError):
    """The artifact store (an object store, a network filesystem) failed every retry of an operation."""

    headline = "Artifact store unavailable"


class StoreUnavailable(ConveyorError):
    """The metadata store is locked, unreachable or not migrated."""

    exit_code = 5
    headline = "Metadata store unavailable"


class NotFound(ConveyorError):
    """The named thing (run, artifact, model version, endpoint…) does not exist."""

    exit_code = 6
    headline = "Not found"


class Conflict(ConveyorError):
    """The action clashes with the current state (duplicate name, protected alias…)."""

    exit_code = 7
    headline = "Conflict"


class PermissionDenied(ConveyorError):
    """The actor lacks the role or the key lacks the scope."""

    exit_code = 8
    headline = "Permission denied"


class InvalidRequest(ConveyorError):
    """An input does not match its schema; ``field`` names the offending part."""

    exit_code = 2
    headline = "Invalid request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(ConveyorError):
    """No credentials, or credentials that match no active key."""

    exit_code = 8
    headline = "Unauthenticated"


class RateLimited(ConveyorError):
    """The caller exceeded its rate limit; ``retry_after`` seconds until the next request is allowed."""

    exit_code = 9
    headline = "Rate limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QualityGateFailed(ConveyorError):
    """A step's check rejected a result (e.g. an accuracy below the pipeline's threshold).

    Raise it from a step to say "the code worked, the result is not good enough": the run's
    failure message then offers a resume with other parameters (``-p key=value``) rather than
    asking to fix the step.
    """

    exit_code = 3
    headline = "Quality gate failed"


class ArtifactUntrusted(ArtifactError):
    """Loading an artifact would run code from it (pickle, joblib, unlisted skops types) and the
    settings do not allow that for this store (``CONVEYOR_ALLOW_PICKLE``)."""

    headline = "Untrusted artifact"


class StepPreempted(ConveyorError):
    """The worker running this attempt was told to stop (SIGTERM: a spot instance taken back).

    Raised by ``cv.checkpoint`` once the state is saved, or at the end of the grace period
    (``CONVEYOR_PREEMPT_GRACE_S``). The attempt ends ``preempted`` and the step call runs again
    (apart from ``retries``), continuing from its last checkpoint. Do not catch it.
    """

    headline = "Step preempted"


class StepTimeout(ConveyorError):
    """One attempt of a step ran longer than its ``timeout``.

    Retried only when ``retry_on`` names it (or a base class of it, such as ``Exception``), e.g.
    ``@step(timeout=60, retries=2, retry_on=(StepTimeout, ConnectionError))``.
    """

    headline = "Step timed out"


class PayloadTooLarge(InvalidRequest):
    """A request body is larger than the server accepts (``CONVEYOR_SERVE_MAX_BODY_BYTES``)."""

    headline = "Payload too large"


class Unavailable(ConveyorError):
    """The server cannot take this request now: overloaded, or the endpoint cannot be served.

    ``retry_after`` is a hint in seconds (None when waiting will not help, e.g. a missing version).
    """

    exit_code = 5
    headline = "Unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.field = field


class PredictionFailed(ConveyorError):
    """The model raised on an input that passed validation (the server's fault, answered 500)."""

    exit_code = 3
    headline = "Prediction failed"

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


class ExportError(PipelineDefinitionError):
    """A pipeline cannot be exported to a target as it is: the message names the step, the construct and the way out."""

    headline = "Export error"


class SourceReadError(ConveyorError):
    """A data source cannot be read: unreachable, refused, or it answered something that is not data.

    The message names the source (as ``describe()`` shows it, without credentials), the place
    (a page URL, a stream, a queue) and the fix.
    """

    exit_code = 4
    headline = "Source read failed"
class SchemaError(ConfigurationError):
    """A data schema is malformed: the message names the file, the line and the constraint."""

    headline = "Schema error"


class ValidationFailed(QualityGateFailed):
    """Data broke one or more schema constraints whose policy is ``fail``; ``report`` holds the details."""

    headline = "Data validation failed"

    def __init__(self, message: str, *, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report
