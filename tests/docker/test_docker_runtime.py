"""The Docker runtime end to end, against the machine's real Docker engine: servers installed
with `--runtime docker` run our scratch sing-box image, real sing-box clients built only from the
printed links push traffic through the container (published on 127.0.0.1) to an HTTP backend on
the host's address in the home's Docker network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.conftest import DockerVpn, backend_on, tcp_to_docker_socket
from tests.e2e.conftest import VPN, curl_fails, curl_via, link_of, singbox_client
from tests.e2e.net import BACKEND_PAGE, Stream, free_port
from vpn_manager.runtimes.docker.options import LABEL_ENGINE, LABEL_HOME, LABEL_SERVER

PAGE = BACKEND_PAGE.decode()


def wait_for(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within:.0f} s")
        time.sleep(0.2)


def status(dvpn: DockerVpn, name: str) -> dict[str, Any]:
    data = dvpn.json("server", "status", name)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("protocol", ["shadowsocks", "mixed"])  # sing-box, the test image
def test_docker_server_carries_traffic_from_the_printed_link(
    dvpn: DockerVpn, tmp_path: Path, protocol: str
) -> None:
    server = dvpn.install(protocol, "edge")
    dvpn.ok("user", "add", "alice", "bob", "--server", server.name)
    (name,) = dvpn.containers()
    container = dvpn.client.containers.get(name)
    attrs = container.attrs
    assert container.labels[LABEL_SERVER] == "edge"
    assert container.labels[LABEL_ENGINE] == "sing-box"
    assert container.labels[LABEL_HOME] == dvpn.home_label
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Image"] == dvpn.image
    # The server's port on the address asked for; API ports on loopback only.
    bindings = attrs["HostConfig"]["PortBindings"]
    assert bindings[f"{server.port}/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]
    if protocol == "shadowsocks":
        assert f"{server.port}/udp" in bindings
    assert all(b[0]["HostIp"] == "127.0.0.1" for b in bindings.values())
    # The rendered config is mounted read-only.
    config_dir = str(dvpn.home / "state" / "rendered" / "edge")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts[config_dir]["RW"] is False
    assert all(m["RW"] is False for m in attrs["Mounts"])

    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as socks,
    ):
        assert curl_via(socks, f"http://{gateway}:{backend}/", attempts_for=10) == PAGE
        body = curl_via(socks, f"http://{gateway}:{backend}/bytes/300000", attempts_for=5)
        assert len(body) == 300_000

    def counted() -> bool:
        rows = dvpn.json("server", "usage", server.name)
        assert isinstance(rows, list)
        return any(r["name"] == "alice" and r["download_bytes"] >= 300_000 for r in rows)

    wait_for(counted, 5, "alice's 300,000 bytes were not counted through the published API")
    box = status(dvpn, server.name)["container"]
    assert box["name"] == name
    assert box["state"] == "running"
    assert box["net_tx_bytes"] >= 300_000  # the container sent alice's download
    assert box["memory_bytes"] > 0


def test_stop_start_restart_remove(dvpn: DockerVpn) -> None:
    server = dvpn.install("shadowsocks", "ss")
    first = status(dvpn, server.name)
    assert first["running"]
    assert first["healthy"]
    assert first["runtime"] == "docker"
    old_id = first["container"]["id"]

    stopped = dvpn.ok("server", "stop", server.name)
    assert "Stopped ss." in stopped.stdout
    assert dvpn.containers() == []
    assert status(dvpn, server.name)["running"] is False
    assert "not running" in dvpn.ok("server", "stop", server.name).stdout

    dvpn.ok("server", "start", server.name)
    started = status(dvpn, server.name)
    assert started["healthy"]
    assert len(dvpn.containers()) == 1

    dvpn.ok("server", "restart", server.name)
    restarted = status(dvpn, server.name)
    assert restarted["healthy"]
    assert restarted["container"]["id"] not in (old_id, started["container"]["id"])

    dvpn.ok("server", "remove", "--yes", server.name)
    assert dvpn.containers() == []
    assert dvpn.networks() == []
    assert dvpn.volumes() == []
    assert dvpn.json("server", "list") == []


def test_a_dead_container_is_seen_and_brought_back(dvpn: DockerVpn, tmp_path: Path) -> None:
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "--server", server.name)
    wait_for(
        lambda: status(dvpn, server.name)["container"]["health"] == "healthy",
        20,
        "the container's health check never said healthy",
    )
    listed = dvpn.ok("server", "list")
    assert "running" in listed.stdout

    # The engine dies inside the container: Docker's restart policy brings it back.
    os.kill(status(dvpn, server.name)["pid"], signal.SIGKILL)
    wait_for(
        lambda: (
            status(dvpn, server.name)["container"]["restarts"] >= 1
            and status(dvpn, server.name)["healthy"]
        ),
        20,
        "Docker did not restart the killed engine",
    )
    # The restarted engine has its config but not the users pushed after start (ssm-api):
    # `server status` sees that by asking the engine, and `vpn serve` gives them back, once.
    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as socks,
    ):
        url = f"http://{gateway}:{backend}/"
        assert curl_fails(socks, url), "the restarted engine knew alice without being told"
        warnings = status(dvpn, server.name)["warnings"]
        assert any("lacks 1 user of the database's" in w for w in warnings), warnings
        healed = dvpn("--format", "json", "serve", "--once")
        assert healed.code == 0, healed.stderr
        assert json.loads(healed.stdout)["fixed"] == {
            server.name: ["set up again what its start sets up: its container was restarted"]
        }
        assert curl_via(socks, url, attempts_for=10) == PAGE
        again = dvpn("--format", "json", "serve", "--once")
        assert json.loads(again.stdout)["fixed"] == {}
        assert status(dvpn, server.name)["warnings"] == []
        assert dvpn.ok("server", "list").stderr.strip() == ""

    # `docker kill` counts as stopped by hand, so Docker leaves it down: we see it, and the
    # service brings it back.
    (name,) = dvpn.containers()
    dvpn.client.containers.get(name).kill()
    wait_for(lambda: status(dvpn, server.name)["running"] is False, 10, "kill was not seen")
    down = dvpn.ok("server", "list")
    assert "stopped (wanted running)" in down.stdout
    assert f"`vpn server restart {server.name}`" in down.stderr
    assert status(dvpn, server.name)["container"]["state"] == "exited"
    served = dvpn.json("serve", "--once")
    assert isinstance(served, dict)
    assert served["started"] == [server.name]
    wait_for(
        lambda: status(dvpn, server.name)["container"]["health"] == "healthy",
        20,
        "the recreated container never became healthy",
    )
    table = dvpn.ok("server", "status", server.name).stdout
    assert "healthy" in table
    assert "cpu" in table
    assert "memory" in table


def test_disabling_a_user_cuts_her_open_connection(dvpn: DockerVpn, tmp_path: Path) -> None:
    """`ss -K` on the host cannot reach a container's sockets: sing-box's API cuts them."""
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "bob", "--server", server.name)
    gateway = dvpn.gateway()
    pid = status(dvpn, server.name)["pid"]
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as alice,
        singbox_client(link_of(dvpn, "bob", server.name), tmp_path / "bob") as bob,
    ):
        curl_via(alice, f"http://{gateway}:{backend}/", attempts_for=10)
        curl_via(bob, f"http://{gateway}:{backend}/", attempts_for=10)
        alice_stream = Stream(alice, backend, host=gateway)
        bob_stream = Stream(bob, backend, host=gateway)
        try:
            assert alice_stream.flowing()
            assert bob_stream.flowing()
            disabled = dvpn.ok("user", "disable", "alice")
            assert "applied live" in disabled.stderr
            wait_for(lambda: alice_stream.ended is not None, 5, "alice's connection survived")
            assert bob_stream.flowing(), "bob's connection was cut too"
            assert curl_fails(alice, f"http://{gateway}:{backend}/")
            assert status(dvpn, server.name)["pid"] == pid  # no restart
        finally:
            alice_stream.close()
            bob_stream.close()


def test_protocols_without_live_users_recreate_the_container(
    dvpn: DockerVpn, tmp_path: Path
) -> None:
    server = dvpn.install("mixed", "tj")  # a sing-box protocol without live users
    dvpn.ok("user", "add", "alice", "--server", server.name)
    before = status(dvpn, server.name)["container"]["id"]
    added = dvpn.ok("user", "add", "bob", "--server", server.name)
    assert "container recreated" in added.stderr
    assert status(dvpn, server.name)["container"]["id"] != before
    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "bob", server.name), tmp_path / "bob") as bob,
    ):
        assert curl_via(bob, f"http://{gateway}:{backend}/", attempts_for=10) == PAGE


def test_a_change_that_fails_is_rolled_back(dvpn: DockerVpn, tmp_path: Path) -> None:
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "--server", server.name)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        failed = dvpn("server", "set", server.name, "--port", str(busy), "--yes")
    assert failed.code != 0
    assert "rolled back" in failed.stderr
    assert "Traceback" not in failed.stderr
    after = status(dvpn, server.name)
    assert after["healthy"]
    listed = dvpn.json("server", "list")
    assert isinstance(listed, list)
    assert listed[0]["port"] == server.port
    gateway = dvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(dvpn, "alice", server.name), tmp_path / "alice") as socks,
    ):
        assert curl_via(socks, f"http://{gateway}:{backend}/", attempts_for=10) == PAGE


def test_logs_and_follow(dvpn: DockerVpn) -> None:
    import socket

    server = dvpn.install("mixed", "tj")

    def poke() -> None:
        # A connection that is not a proxy request: sing-box logs it.
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(b"not tls\r\n\r\n")
            time.sleep(0.1)

    poke()
    wait_for(
        lambda: "tls" in dvpn.ok("server", "logs", server.name, "--lines", "20").stdout.lower(),
        5,
        "the failed handshake never showed in `vpn server logs`",
    )
    follower = subprocess.Popen(
        [str(VPN), "server", "logs", server.name, "--follow", "--lines", "0"],
        env=dvpn.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The follower may attach after a first poke (a slow start on a busy machine): poke
        # until a line comes, instead of waiting for one forever.
        assert follower.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(follower.stdout.readline() if follower.stdout else ""),
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + 20
        while reader.is_alive() and time.monotonic() < deadline:
            poke()
            reader.join(1.5)
        assert lines, "`vpn server logs --follow` showed no new line within 20 s"
        assert "tls" in lines[0].lower() or "inbound" in lines[0].lower(), lines[0]
    finally:
        follower.terminate()
        follower.wait(5)
    # Stopping removes the container; its logs are kept.
    dvpn.ok("server", "stop", server.name)
    assert "inbound" in dvpn.ok("server", "logs", server.name).stdout


def test_list_notices_strays_and_missing_containers(dvpn: DockerVpn) -> None:
    server = dvpn.install("shadowsocks", "ss")
    (name,) = dvpn.containers()
    dvpn.client.containers.get(name).remove(force=True)
    stray = dvpn.client.containers.create(
        dvpn.image,
        command=["version"],
        name=f"vpn-ghost-{os.getpid()}-{free_port()}",
        labels={LABEL_SERVER: "ghost", LABEL_HOME: dvpn.home_label, LABEL_ENGINE: "sing-box"},
    )
    listed = dvpn.ok("server", "list")
    hints = [line for line in listed.stderr.splitlines() if line.strip()]
    assert any(
        f"Server {server.name} should run but its container is gone" in h
        and f"vpn server start {server.name}" in h
        for h in hints
    ), hints
    assert any("'ghost'" in h and f"docker rm -f {stray.name}" in h for h in hints), hints
    # The hints' own fixes work.
    stray.remove(force=True)
    dvpn.ok("server", "start", server.name)
    assert dvpn.ok("server", "list").stderr.strip() == ""


def test_export_compose_is_valid_and_matches(dvpn: DockerVpn, tmp_path: Path) -> None:
    ss = dvpn.install("shadowsocks", "ss")
    tj = dvpn.install("mixed", "tj")
    out = tmp_path / "compose" / "docker-compose.yml"
    out.parent.mkdir()
    dvpn.ok("server", "export-compose", "--file", str(out))
    checked = subprocess.run(
        ["docker-compose", "-f", str(out), "config"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    document = yaml.safe_load(out.read_text())
    services = document["services"]
    assert set(services) == {"ss", "tj"}
    assert f"127.0.0.1:{ss.port}:{ss.port}/tcp" in services["ss"]["ports"]
    assert f"127.0.0.1:{ss.port}:{ss.port}/udp" in services["ss"]["ports"]
    assert f"127.0.0.1:{tj.port}:{tj.port}/tcp" in services["tj"]["ports"]
    assert all(p.startswith("127.0.0.1:") for p in services["tj"]["ports"])
    assert services["tj"]["restart"] == "unless-stopped"
    assert services["tj"]["healthcheck"]["test"][:2] == ["CMD", "sing-box"]
    assert all(v["read_only"] for v in services["tj"]["volumes"])
    assert services["ss"]["container_name"] in dvpn.containers()
    # What the runtime runs is what the file says.
    running = dvpn.client.containers.get(services["tj"]["container_name"])
    assert running.attrs["Config"]["Cmd"] == services["tj"]["command"]
    assert running.attrs["Config"]["Entrypoint"] == services["tj"]["entrypoint"]
    # And Compose runs the same server: alice gets through its container.
    dvpn.ok("user", "add", "alice", "--server", tj.name)
    out.write_text(dvpn.ok("server", "export-compose", "--file", "-").stdout)
    dvpn.ok("server", "stop", ss.name)
    dvpn.ok("server", "stop", tj.name)
    assert dvpn.containers() == []

    def compose(*args: str) -> None:
        done = subprocess.run(
            ["docker-compose", "-f", str(out), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    compose("up", "-d")
    try:
        wait_for(lambda: status(dvpn, tj.name)["healthy"], 10, "the compose-run server is down")
        gateway = dvpn.gateway()
        with (
            backend_on(gateway) as backend,
            singbox_client(link_of(dvpn, "alice", tj.name), tmp_path / "alice") as socks,
        ):
            assert curl_via(socks, f"http://{gateway}:{backend}/", attempts_for=10) == PAGE
    finally:
        compose("down")
    assert dvpn.containers() == []


def test_docker_hosts_and_defaults(dvpn: DockerVpn) -> None:
    # An explicit URL to the local daemon's socket, and a context name, work.
    server = dvpn.install("shadowsocks", "a", "--docker-host", "unix:///var/run/docker.sock")
    assert status(dvpn, server.name)["healthy"]
    by_context = dvpn.install("shadowsocks", "b", "--docker-host", "default")
    assert status(dvpn, by_context.name)["healthy"]
    # tcp:// to the same engine (relayed to its socket): install, status, stop, remove.
    with tcp_to_docker_socket() as relay:
        over_tcp = dvpn.install("mixed", "t", "--docker-host", f"tcp://127.0.0.1:{relay}")
        shown = status(dvpn, over_tcp.name)
        assert shown["healthy"]
        assert shown["container"]["state"] == "running"
        dvpn.ok("server", "remove", "--yes", over_tcp.name)
    # A host nobody answers on: one sentence, an error code, nothing installed.
    port = free_port()
    bad = dvpn("server", "install", "shadowsocks", "--name", "c", "--port", str(free_port()),
               "--runtime", "docker", "--docker-host", f"tcp://127.0.0.1:{port}")  # fmt: skip
    assert bad.code != 0
    assert "Traceback" not in bad.stderr
    assert f"Cannot reach the Docker engine at tcp://127.0.0.1:{port}" in bad.stderr
    unknown = dvpn("server", "install", "shadowsocks", "--name", "c", "--port", str(free_port()),
                   "--runtime", "docker", "--docker-host", "no-such-context")  # fmt: skip
    assert unknown.code != 0
    assert "no Docker context named 'no-such-context'" in unknown.stderr
    remote = dvpn("server", "install", "shadowsocks", "--name", "c", "--port", str(free_port()),
                  "--runtime", "docker", "--docker-host", "tcp://192.0.2.10:2375")  # fmt: skip
    assert remote.code == 3
    assert "can only be reached over ssh://" in remote.stderr  # see test_docker_remote.py
    names = dvpn.json("server", "list")
    assert isinstance(names, list)
    assert [s["name"] for s in names] == ["a", "b"]
    # The default runtime and image come from settings.
    dvpn.env["VPN_RUNTIME"] = "docker"
    dvpn.env["VPN_DOCKER__IMAGES__SING_BOX"] = dvpn.image
    port = free_port()
    dvpn.ok("server", "install", "hysteria2", "--name", "d", "--port", str(port),
            "--sni", "vpn.test", "--listen", "127.0.0.1")  # fmt: skip
    servers = dvpn.json("server", "list")
    assert isinstance(servers, list)
    d = next(s for s in servers if s["name"] == "d")
    assert d["runtime"] == "docker"
    assert d["image"] == dvpn.image
    assert d["running"]


def test_json_status_holds_no_secret(dvpn: DockerVpn) -> None:
    server = dvpn.install("shadowsocks", "ss")
    config = json.loads((dvpn.home / "state" / "rendered" / "ss" / "config.json").read_text())
    secret = next(s["secret"] for s in config["services"] if s["type"] == "api")
    for args in (("server", "status", server.name), ("server", "list")):
        assert secret not in dvpn.ok("--format", "json", *args).stdout
    assert secret not in dvpn.ok("server", "export-compose", "--file", "-").stdout


def test_a_failed_install_leaves_nothing(dvpn: DockerVpn) -> None:
    """An image without the engine: the container cannot start, and the install is undone."""
    import io

    from tests.docker.conftest import TEST_LABEL

    image, _ = dvpn.client.images.build(
        fileobj=io.BytesIO(b"FROM scratch\nLABEL purpose=empty\n"),
        tag=f"vpn-manager-test/empty:{os.getpid()}",
        labels={TEST_LABEL: "1"},
        rm=True,
    )
    try:
        port = free_port()
        failed = dvpn("server", "install", "trojan", "--name", "bad", "--port", str(port),
                      "--sni", "vpn.test", "--listen", "127.0.0.1", "--runtime", "docker",
                      "--image", image.tags[0])  # fmt: skip
        assert failed.code != 0
        assert "Traceback" not in failed.stderr
        assert failed.stderr.startswith("error: Docker could not start the container for bad")
        assert dvpn.json("server", "list") == []
        assert dvpn.containers() == []
        assert dvpn.networks() == []
        assert not (dvpn.home / "state" / "rendered" / "bad").exists()
    finally:
        dvpn.client.images.remove(image.id or "", force=True)
