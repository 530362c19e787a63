"""Docker engines: which engine a host names (URL, context, DOCKER_HOST), whether it is on this
machine, connecting to it (through the ssh tunnel for a remote one), and the engines this home has
made containers on (run/docker-hosts.json)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vpn_manager.errors import EngineError, InvalidInput
from vpn_manager.fsutil import atomic_write, exclusive_briefly, remove_temps
from vpn_manager.runtimes.base import DOCKER_HOSTS_FILE

if TYPE_CHECKING:
    from docker import DockerClient

    from vpn_manager.runtimes.docker.ssh import Tunnel

API_TIMEOUT_S = 30


def describe_host(host: str | None) -> str:
    return host or os.environ.get("DOCKER_HOST") or "the local socket"


def reason(exc: BaseException) -> str:
    """The root cause of a Docker SDK error in a few words (its own messages nest whole reprs)."""
    seen: BaseException | None = exc
    while seen is not None:
        for arg in (seen, *seen.args):
            if isinstance(arg, OSError) and arg.strerror:
                return arg.strerror.rstrip(".")
        seen = seen.__cause__ or seen.__context__
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def base_url_of(host: str | None) -> str | None:
    """The URL of the Docker engine `host` names: a URL as it is, a Docker context's endpoint,
    or (None) DOCKER_HOST; None again means the local socket."""
    if host is None:
        return os.environ.get("DOCKER_HOST") or None
    return host if "://" in host else _context_host(host)


def is_remote(base_url: str | None, where: str = "") -> bool:
    """Whether the Docker engine at `base_url` runs on another machine, which decides how the
    runtime reaches it: unix://, npipe://, fd:// and tcp:// to a loopback address are this
    machine's (configs bind-mounted, control APIs on this loopback); ssh:// is always remote,
    even to 127.0.0.1 (files copied into the containers, the engine's socket and the control
    APIs tunnelled over ssh). A tcp:// engine on another address is refused: the engines'
    control APIs have no authentication and are never published on a public address, and
    plain tcp:// gives no private way to them."""
    if base_url is None or base_url.startswith(("unix://", "npipe://", "fd://")):
        return False
    if base_url.startswith("ssh://"):
        return True
    address = urlsplit(base_url if "://" in base_url else f"tcp://{base_url}").hostname or ""
    if address == "localhost" or address.startswith("127.") or address == "::1":
        return False
    raise InvalidInput(
        f"The Docker engine at {where or base_url} is on another machine and can only be "
        "reached over ssh://, since the engines' control APIs must not be published on a "
        "network.",
        hint="Use --docker-host ssh://user@host (or a Docker context whose endpoint is ssh://).",
    )


def connect(host: str | None, tunnel: Tunnel | None = None) -> DockerClient:
    """A client for the Docker engine at `host`: a URL (unix://, tcp:// to loopback), a Docker
    context name, or None for DOCKER_HOST / the local socket; a remote (ssh://) engine through
    `tunnel`'s local socket. The engine is pinged, so an unreachable one fails here with one
    sentence."""
    import docker
    from docker.errors import DockerException

    where = describe_host(host)
    base_url = base_url_of(host)
    if tunnel is not None:
        tunnel.open()
        base_url = tunnel.docker_url
    elif is_remote(base_url, where):
        raise InvalidInput(f"The Docker engine at {where} is remote and needs an ssh tunnel.")
    try:
        if tunnel is None and host is None:  # DOCKER_HOST with its TLS settings, if any
            client = docker.from_env(timeout=API_TIMEOUT_S)
        else:
            client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S)
        _unreachable_is_engine_error(client, where, tunnel)
        client.ping()
    except DockerException as exc:
        raise EngineError(
            f"Cannot reach the Docker engine at {where}: {reason(exc)}.",
            hint="Is Docker running, and may this user use it? Check `docker info`, or give "
            "another --docker-host (unix://…, tcp://127.0.0.1:PORT, ssh://user@host or a "
            "context).",
        ) from None
    return client


def _unreachable_is_engine_error(client: DockerClient, where: str, tunnel: Tunnel | None) -> None:
    """Every request of `client` that cannot reach the engine (refused, reset, timed out, the
    ssh tunnel gone in the middle of an answer) raises EngineError naming the engine, whichever
    SDK call made it. The SDK lets requests' errors through, and those are OSErrors: unreported,
    they passed for anyone's (the database's), and a rollback waiting for an EngineError was
    skipped. A tunnel is checked again on the next call, which starts a new master if it died."""
    from requests.exceptions import RequestException

    send = client.api.send

    def send_or_fail(request: Any, **options: Any) -> Any:
        try:
            return send(request, **options)
        except RequestException as exc:
            if tunnel is not None:
                tunnel.recheck()
            raise EngineError(
                f"Lost the Docker engine at {where}: {_connection_reason(exc)}.",
                hint="Check the ssh connection to that host and that Docker runs there; "
                "`vpn serve --once` brings its servers back in line."
                if tunnel is not None
                else "Is Docker running? Check `docker info`.",
            ) from None

    client.api.send = send_or_fail  # type: ignore[method-assign]


def _connection_reason(exc: BaseException) -> str:
    """The innermost reason a request failed ("Connection refused", "Remote end closed
    connection without response"), not requests' and urllib3's nested reprs."""
    message = ""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.rstrip(".")
        if isinstance(item, OSError) and len(item.args) == 1 and isinstance(item.args[0], str):
            message = item.args[0]  # http.client's RemoteDisconnected, urllib3's own
        pending.extend(arg for arg in item.args if isinstance(arg, BaseException))
        pending.extend(link for link in (item.__cause__, item.__context__) if link is not None)
    return (message or type(exc).__name__).rstrip(".")


def _context_host(name: str) -> str:
    from docker.context import ContextAPI
    from docker.errors import DockerException

    try:
        context = ContextAPI.get_context(name)
    except DockerException:
        context = None
    if context is None:
        raise InvalidInput(
            f"There is no Docker context named {name!r}.",
            hint="See `docker context ls`, or give a URL: unix://…, tcp://127.0.0.1:PORT, "
            "ssh://user@host.",
        )
    return str(context.Host)


def _hosts_file(run_dir: Path) -> Path:
    return run_dir / DOCKER_HOSTS_FILE


def hosts_used(run_dir: Path) -> set[str]:
    """The Docker engines this home has made containers on ("" for the default one)."""
    try:
        found = json.loads(_hosts_file(run_dir).read_text())
    except (OSError, ValueError):
        return set()
    return {str(host) for host in found} if isinstance(found, list) else set()


def remember_host(run_dir: Path, key: str) -> None:
    """Note a Docker engine a server is being made on, before its container exists: the
    census looks there for this home's containers that no server owns, even after the last
    server on it is gone."""
    if key in hosts_used(run_dir):
        return
    with _hosts_turn(run_dir):
        atomic_write(_hosts_file(run_dir), json.dumps(sorted(hosts_used(run_dir) | {key})) + "\n")


def forget_host(run_dir: Path, key: str) -> None:
    with _hosts_turn(run_dir):
        known = hosts_used(run_dir)
        if key in known:
            atomic_write(_hosts_file(run_dir), json.dumps(sorted(known - {key})) + "\n")


def tidy_hosts(run_dir: Path) -> None:
    """Remove what a docker-hosts.json write killed half-way left (in the writers' turn, so
    that no write is half-way now)."""
    if _hosts_file(run_dir).parent.is_dir():
        with _hosts_turn(run_dir):
            remove_temps(_hosts_file(run_dir))


def _hosts_turn(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """The turn for changing docker-hosts.json: two commands placing servers on two engines
    at once must not drop one."""
    return exclusive_briefly(run_dir / "turns" / "docker-hosts")
