"""The source protocol: anything that yields Arrow record batches, described without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa


@runtime_checkable
class Source(Protocol):
    """A readable source of rows.

    ``kind`` names the module that implements it (``files``, ``sql``, ``http``, ...);
    ``describe()`` is what errors, logs and lineage show: the location with any credential
    removed. ``batches()`` streams, so a source larger than memory can feed a step that iterates;
    ``read()`` is the whole table.
    """

    kind: str

    def describe(self) -> str:
        """Where the rows come from, safe to log (no password, token or signed query string)."""
        ...

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows as Arrow record batches, read lazily."""
        ...

    def read(self) -> pa.Table:
        """Every row as one Arrow table."""
        ...


@runtime_checkable
class Acknowledging(Protocol):
    """A source whose reads are confirmed only after the step that consumed them succeeded
    (streams and queues): ``ack`` confirms what the last read returned, ``nack`` gives it back."""

    def ack(self) -> None:
        ...

    def nack(self) -> None:
        ...


def acknowledge_with_step(source: Acknowledging) -> bool:
    """Inside a running step, have the step acknowledge ``source`` when it succeeds and give its
    messages back when it fails; outside a step (plain Python) do nothing and return False: the
    caller then calls ``ack()`` or ``nack()`` itself."""
    from conveyor.runtime.context import current_step

    ctx = current_step()
    if ctx is None:
        return False
    ctx.acknowledge_on_success(source)
    return True


@runtime_checkable
class Incremental(Protocol):
    """A source that can read only what is new since a watermark (newest file, greatest
    ``updated_at``, a stream offset). ``conveyor.data.watermarks`` keeps the watermark per pipeline
    in the metadata store and advances it only when the run (or the consuming block) succeeded.

    ``resume_after(w)`` restricts the next reads to what comes after ``w`` (a value an earlier
    ``watermark()`` returned, after a JSON round trip); ``watermark()`` is the position after what
    was read so far (JSON-able), or None when nothing was read.
    """

    def resume_after(self, watermark: Any) -> None:
        ...

    def watermark(self) -> Any:
        ...
