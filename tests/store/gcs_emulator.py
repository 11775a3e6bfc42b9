"""gcp-storage-emulator, plus the one JSON API call it lacks: ``objects.move`` (``.../moveTo/o/...``).

gcsfs renames an object with ``moveTo`` and falls back to copy-and-delete only after six
retries with backoff (about 35 s per rename) when the server answers 501, as this emulator does.
Real GCS serves ``moveTo``; here it is served the way GCS defines it for a flat bucket: the
object is copied to the new name, then the source is deleted.

Run as ``python -m tests.store.gcs_emulator --host 127.0.0.1 --port PORT``; storage is in memory.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server, settings
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def move(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """POST b/{bucket}/o/{source}/moveTo/o/{destination}: rename within one bucket."""
    bucket, source, dest = (request.params[k] for k in ("bucket_name", "object_id", "dest_object_id"))
    try:
        moved = objects._copy(request.base_url, storage, bucket, source, bucket, dest)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    objects._delete(storage, bucket, source)
    response.json(moved)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    route = (rf"^{settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
             r"(?P<dest_object_id>.*[^/]+)$", {server.POST: move})
    server.HANDLERS = (route, *server.HANDLERS)     # looked up per request; more specific routes first
    emulator = server.create_server(args.host, args.port, in_memory=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    emulator.start()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    emulator.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
