"""Connecting this process to Ray: one place that decides which cluster, shared by every Ray user.

The address comes from the caller, else ``CONVEYOR_RAY_ADDRESS``, else ``RAY_ADDRESS`` (both read
in ``conveyor.config``). With none, a local Ray is started only when the caller allows it, bound to
127.0.0.1 so that it never listens on the network. A process already connected stays connected:
Ray allows one connection per process, and reconnecting would drop the objects it holds.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ConfigurationError

LOOPBACK = "127.0.0.1"


def ray_address(address: str | None = None) -> str | None:
    """The cluster to connect to: ``address``, else the settings' (``CONVEYOR_RAY_ADDRESS``, ``RAY_ADDRESS``)."""
    if address:
        return address
    from conveyor.config import load_settings

    return load_settings().ray_address


def _is_loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"ray://{address}").hostname or ""
    return host in (LOOPBACK, "localhost") or host.startswith("127.")


def _connected_to(ray: Any) -> str | None:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:   # a Ray Client connection, or a version without it: nothing to compare
        return None


def _port(address: str) -> str:
    return address.rsplit(":", 1)[-1].strip("/")


def connect_ray(address: str | None = None, *, start_local: bool = False, num_cpus: int | None = None) -> Any:
    """Connect to the Ray cluster (see the module's docstring); returns the ``ray`` module.

    Raises ConfigurationError when Ray is not installed, when no address is known and
    ``start_local`` is false, or when the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise ConfigurationError("Ray is not installed. Install the extra: pip install 'conveyor[ray]'.") from None
    if ray.is_initialized():
        current = _connected_to(ray)
        if address and address != "auto" and not address.startswith("ray://") and current \
                and _port(current) != _port(address):
            raise ConfigurationError(
                f"This process is already connected to the Ray cluster at {current}, not to {address}: one process "
                "holds one Ray connection. Run against that cluster, or from a new process for the other one.")
        return ray
    target = ray_address(address)
    options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": True}
    if target is None:
        if not start_local:
            raise ConfigurationError(
                "No Ray cluster to connect to. Set CONVEYOR_RAY_ADDRESS (or RAY_ADDRESS) to the head's address, "
                "for example 10.0.0.5:6379 or ray://head:10001.")
        # a local instance for this process only, never reachable from the network
        ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus, **options)
        return ray
    if target != "auto" and not target.startswith("ray://") and _is_loopback(target):
        options["_node_ip_address"] = LOOPBACK   # a cluster on loopback only sees a driver on loopback
    try:
        ray.init(address=target, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"Cannot connect to the Ray cluster at {target}: {exc}. Check that its head is running "
            "(`ray status --address ...`) and that CONVEYOR_RAY_ADDRESS or RAY_ADDRESS names it.") from None
    return ray
