"""What a stream trigger may watch: a Redis stream or an SQS queue, named by a URL with no secret in it."""

from __future__ import annotations

from urllib.parse import urlsplit

from conveyor.errors import InvalidRequest

#: the source kinds a stream trigger can watch (they count waiting messages without consuming them)
STREAM_KINDS = ("redis-stream", "sqs")


def check_stream_location(location: str) -> str:
    """The stream's or queue's name; refuses, before anything is stored, a location that is not a
    stream or queue or that carries a password."""
    from conveyor.data.sources import open_source

    if urlsplit(location).password:
        raise InvalidRequest(f"--on stream:{location.split('@')[-1]}: the URL carries a password, which would be "
                             "stored with the trigger. Remove it and add password_env=NAME to the URL's query "
                             "(the variable is read by the run).", field="on")
    try:
        source = open_source(location)
    except Exception as exc:
        raise InvalidRequest(f"--on stream:{location}: {exc}", field="on") from None
    if source.kind not in STREAM_KINDS or not hasattr(source, "waiting"):
        raise InvalidRequest(f"--on stream:{location}: a {source.kind} source is not a stream or queue. Use "
                             "redis://HOST:PORT/DB?stream=NAME or sqs://QUEUE.", field="on")
    return str(getattr(source, "stream", None) or getattr(source, "queue", "")).rstrip("/").rsplit("/", 1)[-1]
