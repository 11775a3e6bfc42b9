"""Connecting this process to Ray: the one place that decides which cluster, for every Ray user.

The executor, batch scoring and tuning all call ``connect``. Ray allows one connection per process,
and reconnecting would drop the objects it holds, so the first connection is kept and reused; an
explicit address naming another cluster is refused. Only ``local`` (or no address, when the caller
allows it) starts a Ray instance, bound to 127.0.0.1 so that it never listens on the network.

A ``host:port`` address is probed with a plain TCP connection first: ``ray.init`` waits a minute or
more for a head that is not there, the probe answers in a couple of seconds.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

from conveyor.errors import ConfigurationError

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_S = 2.0     # the TCP probe of a host:port address before ray.init

_lock = threading.Lock()
_connected: str | None = None   # the address this process connected to


def connect(address: str | None, *, start_local: bool = False, num_cpus: int | None = None) -> str:
    """Connect this process to the Ray cluster at ``address`` once and reuse it; returns the address.

    ``address`` is a GCS address (``host:port``), ``auto`` (the cluster ``ray start`` started on
    this machine), ``ray://host:port`` (Ray Client), or ``local`` (start a Ray here). None uses the
    connection this process already has; without one it starts a local Ray when ``start_local``
    (``num_cpus`` bounds it), else it is a ConfigurationError. Callers pass the address of their
    settings (``CONVEYOR_RAY_ADDRESS``, else ``RAY_ADDRESS``).
    """
    global _connected
    try:
        import ray
    except ImportError:
        raise ConfigurationError("Ray is not installed. Install the extra: pip install 'conveyor[ray]'.") from None
    with _lock:
        if ray.is_initialized():
            _check_same_cluster(address, connected_address())
            _connected = _connected or address or "(connected by this process)"
            return _connected
        if address is None and not start_local:
            raise ConfigurationError(
                "CONVEYOR_EXECUTOR=ray needs a Ray cluster: set RAY_ADDRESS (or CONVEYOR_RAY_ADDRESS) to its address "
                "(host:port, or auto for the cluster `ray start` started on this machine), or "
                "CONVEYOR_RAY_ADDRESS=local to start a local Ray for this process.")
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING", "configure_logging": True}
        target = address or "local"
        if target == "local":
            # a local instance for this process only, never reachable from the network
            ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus,
                     **options)
            _connected = target
            return target
        endpoint = gcs_endpoint(target)
        if endpoint is not None:
            probe(target, endpoint, start_local=start_local)
        host = target.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
        if is_loopback(host):   # a cluster bound to loopback: this driver must be on loopback too
            options["_node_ip_address"] = LOOPBACK
        try:
            ray.init(address=target, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            cause = f"{exc} ({exc.__cause__})" if exc.__cause__ else str(exc)
            hint = (" The cluster uses token authentication: set RAY_AUTH_MODE=token and make its token available "
                    "(RAY_AUTH_TOKEN, or ~/.ray/auth_token).") if "Authentication" in cause else ""
            raise ConfigurationError(f"Cannot connect to the Ray cluster at {target}: {_first_line(exc)}.{hint} "
                                     "Check RAY_ADDRESS and that the cluster is running (`ray status`).") from None
        _connected = target
        return target


def disconnect() -> None:
    """Close this process's connection to the cluster (before the cluster itself goes away)."""
    global _connected
    with _lock:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        _connected = None


def connected_address() -> str | None:
    """The GCS address (``host:port``) of the cluster this process is connected to, or None."""
    import sys

    ray = sys.modules.get("ray")   # never imported here just to learn there is no connection
    if ray is None or not ray.is_initialized():
        return None
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:   # a Ray Client connection, or a version without it: nothing to compare
        return None


def same_cluster(a: str, b: str) -> bool:
    """True when two GCS addresses name one cluster: the same port, on the same host or both on this machine.

    Both on this machine: loopback or one of its own addresses. A head started on loopback reports
    its GCS at the machine's address (Ray 2.60), so ``127.0.0.1:6379`` and ``<this host>:6379`` are
    one cluster.
    """
    ea, eb = gcs_endpoint(a), gcs_endpoint(b)
    if ea is None or eb is None:
        return a == b
    return ea[1] == eb[1] and (ea[0] == eb[0] or _on_this_machine(ea[0]) and _on_this_machine(eb[0]))


_own_addresses: frozenset[str] | None = None


def this_machine_addresses() -> frozenset[str]:
    """This machine's names and addresses: loopback, its host names and what they resolve to, and the
    address its outgoing traffic leaves from (which Ray reports as a node's IP). Looked up once."""
    global _own_addresses
    if _own_addresses is None:
        names = {socket.gethostname(), socket.getfqdn()}
        found = names | {LOOPBACK, "::1"}
        for name in names:
            try:
                found.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
            except OSError:   # a name that does not resolve: it stays a name only
                continue
        route = route_address()
        if route:
            found.add(route)
        _own_addresses = frozenset(found)
    return _own_addresses


def _on_this_machine(host: str) -> bool:
    """Loopback, or a name or address of this machine."""
    return is_loopback(host) or host in this_machine_addresses()


def route_address() -> str | None:
    """The address this machine's outgoing traffic leaves from, which Ray reports as a node's IP; None offline.

    A UDP socket's connect sends nothing: it only picks the route.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_socket:
            probe_socket.connect(("8.8.8.8", 80))   # as Ray picks a node's IP: nothing is sent, the route is chosen
            return str(probe_socket.getsockname()[0])
    except OSError:
        return None


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` GCS address; None for ``auto``, ``local``, ``ray://…`` or no port."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def probe(address: str, endpoint: tuple[str, int], *, start_local: bool = False,
          timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ConfigurationError unless something accepts a TCP connection at the GCS ``endpoint``."""
    try:
        with socket.create_connection(endpoint, timeout=timeout):
            return
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
    local = ("unset RAY_ADDRESS and CONVEYOR_RAY_ADDRESS to use a local Ray" if start_local
             else "set CONVEYOR_RAY_ADDRESS=local to start a local Ray for this process")
    raise ConfigurationError(
        f"No Ray cluster answers at {address} ({reason}). Start it with `ray start --head --port {endpoint[1]}` on "
        f"{endpoint[0]}, or {local}.")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_same_cluster(address: str | None, current: str | None) -> None:
    """Refuse an explicit address other than the cluster this process is connected to."""
    if not address or address == _connected:
        return
    endpoint = gcs_endpoint(address)
    if endpoint is None:   # auto, local, ray://: comparable only with what this module connected to
        other = _connected if _connected not in (None, "(connected by this process)") else None
    else:
        other = current if current is not None and not same_cluster(current, address) else None
    if other is not None:
        raise ConfigurationError(
            f"This process is connected to the Ray cluster at {other}; it cannot also use {address}: one process "
            "holds one Ray connection. Run against that cluster, or from another process for the other one.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["LOOPBACK", "connect", "connected_address", "disconnect", "is_loopback", "same_cluster",
           "this_machine_addresses"]
