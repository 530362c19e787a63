"""What a Docker server's container serves is what the database says, whatever was done to the
container behind our back or wherever a command was killed: one `vpn serve --once` (one round
of the service) brings the engine's users, its published port, its config and its network back
in line, and removes this home's containers that no server owns, on every Docker engine the home
has used. Against the machine's real Docker engine and our scratch sing-box image."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

from tests.docker.conftest import DockerVpn, backend_on, tcp_to_docker_socket
from tests.docker.test_docker_runtime import status, wait_for
from tests.e2e.conftest import curl_via, link_of, singbox_client
from tests.e2e.net import BACKEND_PAGE, free_port
from tests.e2e.test_accounting import serve_in_background
from tests.e2e.test_crash import _engine_and_database, accepting, killed_at, leftovers, timed
from vpn_manager.runtimes.docker.options import LABEL_HOME, LABEL_SERVER, network_name

PAGE = BACKEND_PAGE.decode()
# Kills per operation: fewer than the native crash test's, each round makes a container.
KILLS = int(os.environ.get("VPN_CRASH_KILLS_DOCKER", "8"))
SEED = 1414


def served(dvpn: DockerVpn) -> dict[str, Any]:
    """One round of the service, as JSON."""
    done = dvpn("--format", "json", "serve", "--once", timeout=300)
    assert done.code == 0, done.stderr
    found = json.loads(done.stdout)
    assert isinstance(found, dict)
    return found


def container_of(dvpn: DockerVpn, server: str) -> Any:
    (found,) = [
        c
        for c in dvpn.client.containers.list(
            all=True, filters={"label": f"{LABEL_HOME}={dvpn.home_label}"}
        )
        if c.labels.get(LABEL_SERVER) == server
    ]
    return found


def published(container: Any) -> set[int]:
    """The host ports a container publishes for the server (not its control ports)."""
    bindings = container.attrs["HostConfig"]["PortBindings"] or {}
    return {int(b["HostPort"]) for key, value in bindings.items() for b in value or []}


def assert_in_line(dvpn: DockerVpn, what: str, maybe: dict[str, int] | None = None) -> None:
    """After a round: every server of the database runs in its container on its stored port
    (published and in the rendered config) with exactly the database's users in its engine;
    no container of this home is unknown to the database; a server in `maybe` (name → port)
    that is not in the database left no container, no files and a free port."""
    import asyncio

    state = asyncio.run(_engine_and_database(dvpn.home))
    for name, (port, have, want) in state.items():
        assert have is not None, f"{what}: {name} is in the database but not running"
        assert have == want, f"{what}: {name}'s engine has {len(have)} users, database {len(want)}"
        container = container_of(dvpn, name)
        assert port in published(container), f"{what}: {name}'s container is not on {port}"
        config = dvpn.home / "state" / "rendered" / name / "config.json"
        assert f'"listen_port": {port}' in config.read_text(), f"{what}: {name}'s config"
        assert accepting(port), f"{what}: {name} does not accept on its stored port {port}"
    owned = {f"vpn-{name}-" for name in state}
    for container in dvpn.containers():
        assert any(container.startswith(prefix) for prefix in owned), (
            f"{what}: container {container} of this home is unknown to the database"
        )
    for name, port in (maybe or {}).items():
        if name in state:
            continue
        assert not (dvpn.home / "state" / "rendered" / name).exists(), f"{what}: {name}'s files"
        assert not accepting(port), f"{what}: something still listens on {name}'s port {port}"
    assert leftovers(dvpn.home) == [], f"{what}: temp files left behind"


def _restart_by_hand(
    dvpn: DockerVpn, server: str, how: str, *, under_service: bool = False
) -> None:
    """Restart the server's container by hand; unless a running service may have fixed it
    already (`under_service`), its status says what its engine lacks."""
    container = container_of(dvpn, server)
    if how == "restart":
        container.restart(timeout=2)
    else:
        container.stop(timeout=2)
        container.start()
    wait_for(lambda: status(dvpn, server)["healthy"], 20, f"{how}: not healthy")
    assert container_of(dvpn, server).attrs["RestartCount"] == 0
    if under_service:
        return
    warnings = status(dvpn, server)["warnings"]
    assert any("lacks 2 users of the database's" in w for w in warnings), warnings


def repairs(metrics: int, server: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(f'vpn_server_repairs_total{{server="{server}"}} '):
                return int(line.split()[-1])
    raise AssertionError("no vpn_server_repairs_total for the server")


def test_a_hand_restart_of_the_container_loses_no_user(dvpn: DockerVpn, tmp_path: Path) -> None:
    """`docker restart` (and `docker stop` + `docker start`) leave Docker's restart count at 0:
    one round sees the container started behind our back and gives its users back (the engine's
    users are compared with the database's as well); under the running service too, whose
    metrics count the repair."""
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "bob", "--server", server.name)
    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as socks,
    ):
        url = f"http://{gateway}:{backend}/"
        assert curl_via(socks, url) == PAGE
        _restart_by_hand(dvpn, server.name, "restart")
        fixed = served(dvpn)["fixed"]
        assert fixed.get(server.name) == [
            "set up again what its start sets up: its container was restarted"
        ], fixed
        assert curl_via(socks, url, attempts_for=10) == PAGE
        assert served(dvpn)["fixed"] == {}, "a second round found more to fix"
        assert status(dvpn, server.name)["warnings"] == []

        metrics = free_port()
        service = serve_in_background(dvpn, tmp_path / "serve.log", metrics, interval=2)
        try:
            wait_for(lambda: accepting(metrics), 20, "the service's metrics never came up")
            assert repairs(metrics, server.name) == 0
            _restart_by_hand(dvpn, server.name, "stop+start", under_service=True)
            wait_for(lambda: repairs(metrics, server.name) == 1, 10, "no repair in a round")
            assert status(dvpn, server.name)["warnings"] == []
            assert curl_via(socks, url, attempts_for=10) == PAGE
            assert service.poll() is None
        finally:
            service.terminate()
            service.wait(10)
        assert "its container was restarted" in (tmp_path / "serve.log").read_text()
    assert_in_line(dvpn, "after the hand restarts")


def test_a_container_made_for_another_port_is_made_again(dvpn: DockerVpn) -> None:
    """The container publishes what the server's launch was when it was made: one made for
    another port (a command killed between the container and the database, a hand-made
    replacement) is recreated on the stored one, with its users."""
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "--server", server.name)
    old = container_of(dvpn, server.name)
    other = free_port()
    # The same container, but publishing another port: what a killed `set --port` could leave.
    attrs = old.attrs
    old.remove(force=True)
    ports = {f"{other}/tcp": ("127.0.0.1", other), f"{other}/udp": ("127.0.0.1", other)}
    for key, value in (attrs["HostConfig"]["PortBindings"] or {}).items():
        if int(value[0]["HostPort"]) != server.port:
            ports[key] = (value[0]["HostIp"], int(value[0]["HostPort"]))
    dvpn.client.containers.run(
        attrs["Config"]["Image"],
        name=attrs["Name"].lstrip("/"),
        entrypoint=attrs["Config"]["Entrypoint"],
        command=attrs["Config"]["Cmd"],
        labels=attrs["Config"]["Labels"],
        ports=ports,
        volumes=attrs["HostConfig"]["Binds"],
        network=network_name(dvpn.home_label),
        detach=True,
    )
    assert not accepting(server.port)
    fixed = served(dvpn)["fixed"]
    assert any("container" in line for line in fixed.get(server.name, [])), fixed
    assert_in_line(dvpn, "after the round")
    assert other not in published(container_of(dvpn, server.name))


def test_the_home_network_removed_is_seen_and_made_again(dvpn: DockerVpn, tmp_path: Path) -> None:
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "--server", server.name)
    network = dvpn.client.networks.get(network_name(dvpn.home_label))
    network.disconnect(container_of(dvpn, server.name), force=True)
    network.remove()
    listed = dvpn.ok("server", "list")
    assert "off this home's network" in listed.stderr, listed.stderr
    assert "vpn serve --once" in listed.stderr
    fixed = served(dvpn)["fixed"]
    assert any("network" in line for line in fixed.get(server.name, [])), fixed
    assert dvpn.networks() == [network_name(dvpn.home_label)]
    assert_in_line(dvpn, "after the network came back")
    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as socks,
    ):
        assert curl_via(socks, f"http://{gateway}:{backend}/") == PAGE
    assert dvpn.ok("server", "list").stderr.strip() == ""


def test_containers_no_server_owns_are_removed_on_every_engine_used(dvpn: DockerVpn) -> None:
    """A container labelled as this home's with no row (a killed install, a lost row) keeps its
    port: the round removes it, also on a Docker engine no server of the home uses any more."""
    with tcp_to_docker_socket() as relay:
        elsewhere = f"tcp://127.0.0.1:{relay}"
        ghost = dvpn.install("shadowsocks", "ghost")
        away = dvpn.install("mixed", "away", "--docker-host", elsewhere)
        keep = dvpn.install("shadowsocks", "keep")
        # Their rows go (the database restored from a backup, a row lost): the containers stay.
        database = sqlite3.connect(dvpn.home / "data" / "vpn.db")
        with database:
            database.execute("DELETE FROM servers WHERE name IN ('ghost', 'away')")
        database.close()
        assert accepting(ghost.port)
        assert accepting(away.port)
        hints = dvpn.ok("server", "list").stderr
        assert "'ghost'" in hints, hints
        assert "'away'" in hints, hints
        fixed = served(dvpn)["fixed"]
        removed = " ".join(fixed.get("", []))
        assert "vpn-ghost-" in removed, fixed
        assert "vpn-away-" in removed, fixed
        assert_in_line(dvpn, "after the round", {"ghost": ghost.port, "away": away.port})
        assert [c for c in dvpn.containers() if "keep" not in c] == []
        assert accepting(keep.port)
        assert served(dvpn)["fixed"] == {}
        assert dvpn.ok("server", "list").stderr.strip() == ""


def _args_install(name: str, port: int, image: str) -> list[str]:
    return [
        *("server", "install", "shadowsocks", "--name", name, "--port", str(port)),
        *("--listen", "127.0.0.1", "--host", "127.0.0.1", "--runtime", "docker"),
        *("--image", image),
    ]


def test_kill_during_a_docker_install(dvpn: DockerVpn) -> None:
    """`server install --runtime docker` killed (-9) at random moments, then one round."""
    rng = random.Random(SEED)
    took = timed(dvpn, _args_install("t", free_port(), dvpn.image))
    dvpn.ok("server", "remove", "t", "--yes")
    for round_ in range(KILLS):
        name, port = f"i{round_}", free_port()
        delay = rng.uniform(0, took * 1.2)
        killed_at(dvpn, _args_install(name, port, dvpn.image), delay)
        served(dvpn)
        assert_in_line(dvpn, f"install killed after {delay:.2f} s", {name: port})
        dvpn("server", "remove", name, "--yes")
    print(f"docker server install: {KILLS} kills tried (uninterrupted: {took:.1f} s)")


def test_kill_during_a_docker_port_change(dvpn: DockerVpn) -> None:
    """`server set --port` of a Docker server killed (-9) at random moments, then one round:
    the container publishes the stored port, the config says it, the users are all there."""
    rng = random.Random(SEED + 1)
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "bob", "--server", server.name)
    took = timed(dvpn, ["server", "set", "ss", "--port", str(free_port()), "--yes"])
    for round_ in range(KILLS):
        delay = rng.uniform(0, took * 1.2)
        killed_at(dvpn, ["server", "set", "ss", "--port", str(free_port()), "--yes"], delay)
        served(dvpn)
        assert_in_line(dvpn, f"set --port killed after {delay:.2f} s (round {round_})")
    print(f"docker server set --port: {KILLS} kills tried (uninterrupted: {took:.1f} s)")
