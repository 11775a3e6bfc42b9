"""Which artifact I/O errors are worth retrying, how long to retry them, and what the user reads after.

A remote store (S3, GCS, Azure, HTTP) that restarts or drops a connection recovers in seconds, so
its connection errors are retried with a doubling, capped backoff. Errors that a retry cannot fix
(a missing object or bucket, a refused permission, a full local disk) are not retried. Once the
retries are spent, the library's exception becomes an ``ArtifactStoreUnavailable`` that names the
URL and the fix; botocore, aiohttp and friends never reach the engine or the CLI.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from conveyor.errors import ArtifactError, ArtifactStoreUnavailable, ConveyorError

T = TypeVar("T")
log = logging.getLogger("conveyor.artifacts")

# Exceptions raised by these packages come from a remote store's client stack.
_BACKEND_MODULES = ("botocore", "boto3", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "gcsfs",
                    "google", "azure", "adlfs", "fsspec", "http")
# Errors that mean "this will not get better by waiting".
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a transient artifact I/O error."""

    retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        return min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))


def from_backend(exc: BaseException) -> bool:
    """True when ``exc`` was raised by a remote store's client library."""
    return type(exc).__module__.split(".", 1)[0] in _BACKEND_MODULES


def is_transient(exc: BaseException, *, remote: bool) -> bool:
    """Worth another try: a connection-level failure of a remote store."""
    if not remote or isinstance(exc, (ConveyorError, *_PERMANENT)):
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        return False
    return isinstance(exc, OSError | TimeoutError) or from_backend(exc)


def describe(exc: BaseException) -> str:
    """One line naming the cause, without the library's traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def no_space(exc: BaseException) -> bool:
    """True for "No space left on device" (and a full quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def with_retries(policy: RetryPolicy, fn: Callable[[], T], *, remote: bool, what: str, where: str) -> T:
    """Call ``fn``; retry transient errors with backoff; then raise ArtifactStoreUnavailable.

    ``what`` says what was being done ("writing an artifact"), ``where`` names the URL.
    """
    attempt = 0
    started = time.monotonic()
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc, remote=remote):
                raise
            attempt += 1
            if attempt > policy.retries:
                raise ArtifactStoreUnavailable(
                    f"The artifact store did not answer while {what} at {where}: {describe(exc)} "
                    f"({attempt} attempts over {time.monotonic() - started:.1f}s). Check that the object store "
                    "is running and reachable (endpoint, network, credentials), or allow longer outages with "
                    "CONVEYOR_ARTIFACT_RETRIES and CONVEYOR_ARTIFACT_BACKOFF_S; then resume the run with "
                    "`conveyor runs resume RUN_ID`.") from None
            delay = policy.delay(attempt)
            log.warning("The artifact store did not answer while %s at %s (%s); retry %d of %d in %.2fs.",
                        what, where, describe(exc), attempt, policy.retries, delay)
            time.sleep(delay)


def translated(exc: BaseException, *, what: str, where: str, root: str) -> ArtifactError:
    """A clear ArtifactError for a non-transient I/O error (a full disk, a missing bucket, a refusal)."""
    if no_space(exc):
        return ArtifactError(
            f"No space left on device while {what} at {where}. Free space there, or set CONVEYOR_ARTIFACT_ROOT "
            f"to a filesystem with room (it is {root}), then resume the run with `conveyor runs resume RUN_ID`.")
    if isinstance(exc, PermissionError):
        return ArtifactError(f"Permission denied while {what} at {where}: {describe(exc)}. Check the permissions "
                             "or credentials for CONVEYOR_ARTIFACT_ROOT.")
    if isinstance(exc, FileNotFoundError):
        return ArtifactError(f"Not found while {what} at {where}: {describe(exc)}. Check that the bucket or "
                             f"folder of CONVEYOR_ARTIFACT_ROOT ({root}) exists.")
    return ArtifactError(f"{what[0].upper()}{what[1:]} at {where} failed: {describe(exc)}. Check the path, "
                         "permissions and free space of CONVEYOR_ARTIFACT_ROOT.")
