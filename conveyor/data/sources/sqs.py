"""Amazon SQS queues read as micro-batches, deleted only after the step that read them succeeded.

``open_source("sqs://orders")`` (a queue name, resolved in the default region) or
``open_source("sqs", queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/orders")``
receives up to ``max_records`` messages, long-polling up to ``max_wait`` seconds when none is
waiting. A received message is invisible to other readers for ``visibility_timeout`` seconds:
``ack()`` deletes it; ``nack()`` makes it visible again at once; a reader that died without
either leaves it to reappear when the timeout ends. Credentials, region and endpoint come from
boto3's usual chain (``AWS_*`` variables, profiles, instance roles), never from the location.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from conveyor.data.sources.base import acknowledge_with_step
from conveyor.errors import ConfigurationError, SourceReadError

if TYPE_CHECKING:
    import pyarrow as pa

ID_COLUMN = "_message_id"


@dataclass(slots=True)
class SqsSource:
    """One SQS queue. Each message is a row: ``_message_id`` and, with ``body="json"`` (the
    default), the keys of its JSON object body as columns; with ``body="text"``, a ``body`` column."""

    queue: str                               # a queue name or a queue URL
    body: Literal["json", "text"] = "json"
    max_records: int = 1_000
    max_wait: float = 1.0
    visibility_timeout: int = 300
    region: str | None = None
    endpoint_url: str | None = None          # None: boto3's own (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL)
    kind: str = field(default="sqs", init=False)
    _receipts: dict[str, str] = field(default_factory=dict, init=False, repr=False)   # message id -> handle
    _client: Any = field(default=None, init=False, repr=False)
    _url: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.queue:
            raise ConfigurationError("An SQS source needs a queue: open_source('sqs://NAME') or "
                                     "queue_url='https://...'.")
        if self.body not in ("json", "text"):
            raise ConfigurationError(f"{self.describe()}: body={self.body!r} is not 'json' or 'text'.")
        if self.max_records < 1 or self.max_wait < 0 or not 0 <= self.visibility_timeout <= 43_200:
            raise ConfigurationError(f"{self.describe()}: max_records must be at least 1, max_wait at least 0 and "
                                     "visibility_timeout between 0 and 43200 seconds.")

    def describe(self) -> str:
        """The queue (its URL has no credential in it)."""
        return f"sqs queue {self.queue}"

    # --- reading ------------------------------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One batch per receive (at most 10 messages each, SQS's limit), ``max_records`` in all."""
        client, url = self._connect()
        acknowledge_with_step(self)
        remaining = self.max_records
        deadline = time.monotonic() + self.max_wait
        while remaining > 0:
            left = deadline - time.monotonic()
            wait = max(0, min(20, math.ceil(left))) if left > 0 else 0
            reply = self._call("receive_message", client.receive_message, QueueUrl=url,
                               MaxNumberOfMessages=min(10, remaining), WaitTimeSeconds=wait,
                               VisibilityTimeout=self.visibility_timeout)
            messages = [m for m in reply.get("Messages", []) if m["MessageId"] not in self._receipts]
            if not messages:          # none within the wait (or past max_wait): this micro-batch is complete
                return
            remaining -= len(messages)
            rows = []
            for message in messages:
                self._receipts[message["MessageId"]] = message["ReceiptHandle"]
                rows.append(self._row(message))
            yield self._batch(rows)

    def read(self) -> pa.Table:
        """Every message of this micro-batch as one table."""
        import pyarrow as pa

        tables = [pa.Table.from_batches([b]) for b in self.batches()]
        if not tables:
            return pa.table({ID_COLUMN: pa.array([], pa.string())})
        return pa.concat_tables(tables, promote_options="permissive")

    def waiting(self) -> int:
        """About how many messages are visible now (SQS's approximate count): what a trigger looks at."""
        client, url = self._connect()
        reply = self._call("get_queue_attributes", client.get_queue_attributes, QueueUrl=url,
                           AttributeNames=["ApproximateNumberOfMessages"])
        return int(reply.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    # --- acknowledging ------------------------------------------------------------------------

    def ack(self) -> None:
        """Delete every message received so far; an error names those the queue did not delete."""
        handles, self._receipts = self._receipts, {}
        self._each_ten(handles, "delete_message_batch", lambda i, h: {"Id": i, "ReceiptHandle": h})

    def nack(self) -> None:
        """Make every message received so far visible again at once, for the next read."""
        handles, self._receipts = self._receipts, {}
        self._each_ten(handles, "change_message_visibility_batch",
                       lambda i, h: {"Id": i, "ReceiptHandle": h, "VisibilityTimeout": 0})

    # --- helpers ------------------------------------------------------------------------------

    def _each_ten(self, handles: dict[str, str], operation: str, entry: Any) -> None:
        if not handles:
            return
        client, url = self._connect()
        items = list(handles.items())
        failed: list[str] = []
        for start in range(0, len(items), 10):                  # SQS takes 10 entries per batch call
            chunk = items[start:start + 10]
            entries = [entry(str(n), handle) for n, (_, handle) in enumerate(chunk)]
            reply = self._call(operation, getattr(client, operation), QueueUrl=url, Entries=entries)
            failed += [f"{chunk[int(f['Id'])][0]} ({f.get('Code', 'error')})" for f in reply.get("Failed", [])]
        if failed:
            raise SourceReadError(f"{self.describe()}: {operation} failed for {len(failed)} message(s): "
                                  f"{', '.join(failed[:5])}. They reappear after their visibility timeout; raise "
                                  "visibility_timeout= if steps take longer than it.")

    def _connect(self) -> tuple[Any, str]:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigurationError("Reading SQS needs boto3: pip install 'conveyor[sqs]'.") from None
            self._client = boto3.client("sqs", region_name=self.region, endpoint_url=self.endpoint_url)
        if self._url is None:
            if self.queue.startswith(("https://", "http://")):
                self._url = self.queue
            else:
                reply = self._call("get_queue_url", self._client.get_queue_url, QueueName=self.queue)
                self._url = reply["QueueUrl"]
        return self._client, self._url

    def _call(self, operation: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

        try:
            return method(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                fix = "Check the queue name and the region (AWS_DEFAULT_REGION), or create the queue."
            elif code in ("AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch"):
                fix = "Check the AWS credentials and the queue's policy."
            else:
                fix = "See the AWS error code above."
            raise SourceReadError(f"{self.describe()}: {operation} failed with {code or 'an error'}: "
                                  f"{exc.response.get('Error', {}).get('Message', '')}. {fix}") from None
        except NoRegionError:
            raise SourceReadError(f"{self.describe()}: no AWS region. Set AWS_DEFAULT_REGION or pass "
                                  "region=.") from None
        except NoCredentialsError:
            raise SourceReadError(f"{self.describe()}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, a profile, or an instance role.") from None
        except BotoCoreError as exc:
            raise SourceReadError(f"{self.describe()}: {operation} failed: {exc}. Check the endpoint and the "
                                  "network.") from None

    def _row(self, message: dict[str, Any]) -> dict[str, Any]:
        text = message.get("Body", "")
        if self.body == "text":
            return {ID_COLUMN: message["MessageId"], "body": text}
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SourceReadError(f"{self.describe()}: message {message['MessageId']} is not a JSON object (it starts "
                                  f"{text[:40]!r}). Send JSON objects, or read with body='text'.")
        return {ID_COLUMN: message["MessageId"], **data}

    def _batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        import pyarrow as pa

        try:
            return pa.RecordBatch.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceReadError(f"{self.describe()}: messages {rows[0][ID_COLUMN]}.. do not form a table ({exc}). "
                                  "Give each field one type, or read with body='text'.") from None


def open_sqs(location: str | None, **options: Any) -> SqsSource:
    """The registry's factory: ``sqs://NAME`` or ``queue_url=`` / ``queue=`` (a name or URL)."""
    queue = options.pop("queue_url", None) or options.pop("queue", None)
    if queue is None and location:
        parts = urlsplit(location)
        queue = (parts.netloc + parts.path).strip("/") if parts.scheme == "sqs" else location
    try:
        return SqsSource(queue=queue or "", **options)
    except TypeError as exc:
        raise ConfigurationError(f"SQS source: {exc}. See docs/data.md for its options.") from None
