"""An S3 emulator process for the fault suite: ``python moto_s3.py PORT BUCKET``.

The bucket exists from the instant the port accepts connections (it is created in the emulator's
memory before the server binds), so a client that retries through a restart never meets a
missing bucket. Like any moto server, it keeps objects in memory only: a restart loses them.
"""

from __future__ import annotations

import sys
import threading


def main() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    port, bucket = int(sys.argv[1]), sys.argv[2]
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(bucket, "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
