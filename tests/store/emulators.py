"""Object-store emulators on loopback: moto (S3), gcp-storage-emulator (GCS) and Azurite (Azure Blob).

Each one is a real server in its own process on a free 127.0.0.1 port, started by a context
manager that waits until it answers and always stops it. Each comes with the environment a user
sets to reach such a store; nothing is passed to fsspec by hand, so every process Conveyor starts
(step workers, batch-scoring workers, runs launched by the agent) finds the store the same way.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, free_port

AZURITE_VERSION = "3.35.0"
AZURITE_PREFIX = REPO / ".cache" / "azurite"
# Azurite's well-known development account, published in its documentation; not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True, slots=True)
class Emulator:
    """A running emulator: its base URL and the environment that points clients at it."""

    url: str
    environment: dict[str, str]


def _wait_until_up(proc: subprocess.Popen, url: str, name: str, log: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start on {url}: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def _serve(cmd: list[str], url: str, name: str, **popen: object) -> Iterator[None]:
    with tempfile.NamedTemporaryFile(prefix=f"conveyor-{name}-", suffix=".log") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)  # type: ignore[call-overload]
        try:
            _wait_until_up(proc, url, name, Path(log.name))
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def moto_s3() -> Iterator[Emulator]:
    """moto's S3 server; clients find it through ``AWS_ENDPOINT_URL``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, "moto"):
        yield Emulator(url, {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                             "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})


@contextlib.contextmanager
def gcs() -> Iterator[Emulator]:
    """gcp-storage-emulator, in memory; clients find it through ``STORAGE_EMULATOR_HOST``.

    ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` keeps gcsfs from probing each bucket's layout
    (the emulator does not answer that probe, and each bucket would cost a 60 s timeout);
    ``NO_GCE_CHECK=true`` skips the metadata-server probe, so gcsfs goes straight to anonymous access.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve([sys.executable, "-m", "tests.store.gcs_emulator", "--host", "127.0.0.1", "--port", str(port)],
                url, "gcs-emulator", cwd=str(REPO)):
        yield Emulator(url, {"STORAGE_EMULATOR_HOST": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                             "NO_GCE_CHECK": "true"})


def azurite_command() -> Path:
    """The ``azurite-blob`` executable under ``.cache/azurite``, installed from npm on first use."""
    from tests.npm import npm_package

    exe = AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():   # scripts/system-packages.sh installs it for make test
        return exe
    return npm_package(AZURITE_PREFIX, f"azurite@{AZURITE_VERSION}") / "node_modules" / ".bin" / "azurite-blob"


@contextlib.contextmanager
def azurite() -> Iterator[Emulator]:
    """Azurite's Blob service; clients find it through ``AZURE_STORAGE_CONNECTION_STRING``."""
    exe = azurite_command()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="conveyor-azurite-") as data, _serve(
            [str(exe), "--skipApiVersionCheck", "--disableTelemetry", "--silent", "--location", data,
             "--blobHost", "127.0.0.1", "--blobPort", str(port)], url, "azurite"):
        connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                      f"BlobEndpoint={url}/{AZURITE_ACCOUNT};")
        yield Emulator(url, {"AZURE_STORAGE_CONNECTION_STRING": connection})

