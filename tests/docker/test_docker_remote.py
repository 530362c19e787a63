"""Remote Docker engines (ssh://) end to end. The tests start their own sshd on 127.0.0.1 and point
vpn at `ssh://USER@127.0.0.1:PORT`: ssh:// is remote even on loopback, so everything goes the
remote way (the Docker socket and the control APIs through the ssh tunnel, files copied into the
containers instead of mounted), against this machine's real Docker engine."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.docker.conftest import DockerVpn, Sshd, backend_on, docker_home
from tests.docker.test_docker_runtime import wait_for
from tests.e2e.conftest import Server, curl_fails, curl_via, link_of, singbox_client
from tests.e2e.net import BACKEND_PAGE, free_port
from tests.e2e.other_user import callers, singbox_services
from vpn_manager.engines import guard
from vpn_manager.runtimes.docker.options import LABEL_HOME
from vpn_manager.runtimes.docker.ssh import Tunnel
from vpn_manager.settings import DockerSshSettings, Paths

if TYPE_CHECKING:
    from docker import DockerClient

PAGE = BACKEND_PAGE.decode()


class RemoteVpn(DockerVpn):
    def __init__(self, home: Path, image: str, client: DockerClient, sshd: Sshd) -> None:
        super().__init__(home, image, client)
        self.sshd = sshd
        self.env |= sshd.env()

    def install_remote(self, protocol: str, name: str, *extra: str) -> Server:
        """Install on the ssh:// engine (or on the --docker-host given in `extra`)."""
        port = free_port()
        args = ["server", "install", protocol, "--name", name, "--port", str(port)]
        args += ["--listen", "127.0.0.1", "--allow-private", "--runtime", "docker"]
        args += ["--image", self.image, *(extra or ("--docker-host", self.sshd.url))]
        if protocol == "hysteria2":
            args += ["--sni", "vpn.test"]
        self.ok(*args, timeout=120)
        return Server(name, port)

    def tunnel(self) -> Tunnel:
        """The tunnel vpn uses for this home and host (found by its ControlPath)."""
        paths = Paths.from_env({}, home=self.home)
        settings = DockerSshSettings.model_validate(
            {
                "identity_file": str(self.sshd.identity),
                "known_hosts_file": str(self.sshd.known_hosts),
                "config_file": str(self.sshd.client_config),
            }
        )
        return Tunnel(self.sshd.url, self.home_label, paths.run_dir, settings)


@pytest.fixture
def rvpn(
    tmp_path: Path, singbox_image: str, docker_client: DockerClient, sshd: Sshd
) -> Iterator[RemoteVpn]:
    runner = RemoteVpn(tmp_path / "home", singbox_image, docker_client, sshd)
    try:
        with docker_home(runner, docker_client):
            yield runner
    finally:
        runner.tunnel().close()  # ssh -O exit: the master and its forwards


def file_in(container: Any, path: Path) -> tarfile.TarInfo:
    stream, _ = container.get_archive(str(path))
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.getmembers()[0]


def downloaded(vpn: DockerVpn, user: str) -> int:
    data = vpn.json("user", "show", user)
    assert isinstance(data, dict)
    return int(data["download_bytes"])


def test_shadowsocks_on_a_remote_engine_over_ssh(rvpn: RemoteVpn, tmp_path: Path) -> None:
    server = rvpn.install_remote("shadowsocks", "far")
    assert rvpn.tunnel().master_pid() is not None, "no ssh master connection"
    (name,) = rvpn.containers()
    container = rvpn.client.containers.get(name)
    # Nothing of this machine is mounted: the files were copied in, modes kept.
    assert container.attrs["Mounts"] == []
    config = rvpn.home / "state" / "rendered" / "far" / "config.json"
    assert file_in(container, config).mode & 0o777 == 0o600
    assert file_in(container, config.parent).mode & 0o777 == 0o700
    # The API ports are on the remote loopback only, at ports Docker picked.
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert all(b[0]["HostIp"] == "127.0.0.1" for b in bindings.values())
    status = rvpn.json("server", "status", "far")
    assert isinstance(status, dict)
    assert status["healthy"]
    # Said plainly: the remote loopback is out of this machine's firewall.
    (warning,) = status["warnings"]
    assert "where every local user of that machine can reach it" in warning
    assert status["api_ok"]
    assert status["port_open"]
    # The link's address defaults to the remote host's (as ssh resolves it).
    added = rvpn.ok("user", "add", "alice", "--server", "far")
    assert "live" in added.stdout + added.stderr
    link = link_of(rvpn, "alice", "far")
    assert f"@127.0.0.1:{server.port}" in link

    gateway = rvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link, tmp_path / "alice") as socks,
    ):
        url = f"http://{gateway}:{backend}/"
        assert curl_via(socks, url, attempts_for=10) == PAGE
        rvpn.ok("serve", "--once")
        before = downloaded(rvpn, "alice")
        body = curl_via(socks, f"{url}bytes/300000", attempts_for=5)
        assert len(body) == 300_000
        rvpn.ok("serve", "--once")  # counters read through the tunnelled ssm-api
        assert downloaded(rvpn, "alice") - before >= 300_000

        # A user added live (ssm-api through the tunnel) works at once; the container's copy
        # of the config follows.
        rvpn.ok("user", "add", "bob", "--server", "far")
        with singbox_client(link_of(rvpn, "bob", "far"), tmp_path / "bob") as bob:
            assert curl_via(bob, url, attempts_for=10) == PAGE
        # A removed user is cut and refused (sing-box's API through the tunnel).
        rvpn.ok("user", "delete", "--yes", "alice")
        assert curl_fails(socks, url)
    copied = rvpn.client.containers.get(name).get_archive(str(config))[0]
    with tarfile.open(fileobj=io.BytesIO(b"".join(copied))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        assert member is not None
        assert member.read().decode() == config.read_text()

    # The shared connection going away (idle, network) is no problem: the next command
    # starts another one, and forwards its ports again.
    rvpn.tunnel().close()
    assert rvpn.tunnel().master_pid() is None
    again = rvpn.json("server", "status", "far")
    assert isinstance(again, dict)
    assert again["healthy"]
    assert rvpn.tunnel().master_pid() is not None
    stop_start_remove(rvpn, "far")


def test_the_tunnel_ends_refuse_other_local_users(rvpn: RemoteVpn) -> None:
    """The ssh tunnel's local ends of a remote server's API ports, on this machine's loopback,
    answer us and no other local user (the server's nftables table); stop removes the table."""
    rvpn.install_remote("shadowsocks", "far")
    config = json.loads((rvpn.home / "state/rendered/far/config.json").read_text())
    ssm_port = singbox_services(config)["ssm-api"]["listen_port"]
    (name,) = rvpn.containers()
    ports = rvpn.client.containers.get(name).attrs["NetworkSettings"]["Ports"]
    published = ports[f"{ssm_port}/tcp"][0]["HostPort"]
    local = json.loads(rvpn.tunnel().forwards_file.read_text())["ports"][str(published)]
    url = f"http://127.0.0.1:{local}/server/v1/users"
    with callers() as (nobody, us):
        assert us.http("GET", url).get("status") == 200
        assert not nobody.http("GET", url)["reached"]
    rvpn.ok("server", "stop", "far")
    table = guard.table(rvpn.home_label, "far")
    assert (
        table
        not in subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, check=True
        ).stdout
    )


def stop_start_remove(rvpn: RemoteVpn, name: str) -> None:
    """stop / start / restart / remove, all through the tunnel; nothing is left behind."""
    rvpn.ok("server", "stop", name)
    assert rvpn.containers() == []
    rvpn.ok("server", "start", name)
    wait_for(lambda: len(rvpn.containers()) == 1, 10, "no container after start")
    again = rvpn.json("server", "status", name)
    assert isinstance(again, dict)
    assert again["healthy"]
    rvpn.ok("server", "restart", name)
    rvpn.ok("server", "remove", "--yes", name)
    assert rvpn.containers() == []
    assert rvpn.networks() == []
    assert rvpn.json("server", "list") == []


def test_hysteria2_through_an_ssh_docker_context(
    rvpn: RemoteVpn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Docker context whose endpoint is ssh:// is remote too. Hysteria2's certificate lives in
    the keys directory: copied in like the config, modes kept."""
    from docker.context import ContextAPI

    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    ContextAPI.create_context("far-away", host=rvpn.sshd.url)
    rvpn.env["DOCKER_CONFIG"] = str(config)
    rvpn.install_remote("hysteria2", "tj", "--docker-host", "far-away")
    listed = rvpn.json("server", "list")
    assert isinstance(listed, list)
    assert [s["docker_host"] for s in listed] == ["far-away"]
    rvpn.ok("user", "add", "carol", "--server", "tj")
    (name,) = rvpn.containers()
    container = rvpn.client.containers.get(name)
    assert container.attrs["Mounts"] == []
    keys = rvpn.home / "data" / "keys" / "tj"
    for path in (p for p in keys.iterdir() if p.is_file()):
        assert file_in(container, path).mode & 0o777 == path.stat().st_mode & 0o777
    gateway = rvpn.gateway()
    with (
        backend_on(gateway) as backend,
        singbox_client(link_of(rvpn, "carol", "tj"), tmp_path / "carol") as socks,
    ):
        assert curl_via(socks, f"http://{gateway}:{backend}/", attempts_for=10) == PAGE


def test_a_failed_change_on_a_remote_engine_is_rolled_back(rvpn: RemoteVpn) -> None:
    """The same transaction as on this machine: a change the remote engine cannot take (its
    new port is taken there) is rolled back, with the old files copied into the new container."""
    import socket

    server = rvpn.install_remote("shadowsocks", "rb")
    config = rvpn.home / "state" / "rendered" / "rb" / "config.json"
    before = config.read_text()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        failed = rvpn("server", "set", "rb", "--port", str(taken), "--yes")
    assert failed.code == 8, failed.stderr
    assert "Docker could not start the container for rb" in failed.stderr
    assert "rolled back" in failed.stderr
    assert config.read_text() == before
    status = rvpn.json("server", "status", "rb")
    assert isinstance(status, dict)
    assert status["healthy"]
    listed = rvpn.json("server", "list")
    assert isinstance(listed, list)
    assert [s["port"] for s in listed] == [server.port]
    (name,) = rvpn.containers()
    copied, _ = rvpn.client.containers.get(name).get_archive(str(config))
    with tarfile.open(fileobj=io.BytesIO(b"".join(copied))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        assert member is not None
        assert member.read().decode() == before


def test_an_unreachable_ssh_host_is_one_sentence(rvpn: RemoteVpn) -> None:
    closed = free_port()
    done = rvpn(
        "server",
        "install",
        "shadowsocks",
        "--name",
        "nowhere",
        "--port",
        str(free_port()),
        "--runtime",
        "docker",
        "--docker-host",
        f"ssh://root@127.0.0.1:{closed}",
    )
    assert done.code != 0
    first = done.stderr.strip().splitlines()[0]
    sentence = f"error: Cannot reach the Docker host root@127.0.0.1:{closed} over ssh: ssh: "
    assert first == sentence + f"connect to host 127.0.0.1 port {closed}: Connection refused."
    assert "Traceback" not in done.stderr
    assert rvpn.json("server", "list") == []


def test_tcp_to_another_machine_is_refused(rvpn: RemoteVpn) -> None:
    done = rvpn(
        "server",
        "install",
        "shadowsocks",
        "--name",
        "tcp",
        "--port",
        str(free_port()),
        "--runtime",
        "docker",
        "--docker-host",
        "tcp://192.0.2.1:2375",
    )
    assert done.code == 3
    assert "can only be reached over ssh://" in done.stderr
    assert "Traceback" not in done.stderr


def engine_users(rvpn: RemoteVpn, server: str) -> list[str]:
    """The users the server's container runs with (their engine identities): its inbound's
    users in the config that was copied into it."""
    (name,) = rvpn.containers()
    config = rvpn.home / "state" / "rendered" / server / "config.json"
    copied, _ = rvpn.client.containers.get(name).get_archive(str(config))
    with tarfile.open(fileobj=io.BytesIO(b"".join(copied))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        assert member is not None
        data = json.loads(member.read())
    (inbound,) = [i for i in data["inbounds"] if i["type"] == "hysteria2"]
    return sorted(user["name"] for user in inbound["users"])


def database_users(rvpn: RemoteVpn, server: str) -> list[str]:
    listed = rvpn.json("user", "list")
    assert isinstance(listed, list)
    return sorted(u["name"] for u in listed if server in u["servers"])


def test_a_tunnel_dropped_during_a_user_add_is_the_runtimes_error(rvpn: RemoteVpn) -> None:
    """The ssh master dies while `vpn user add` gives a remote Hysteria2 server a new user (a new
    container): exit 8 naming the Docker host, not a database error with a database hint; the
    change is rolled back and the server runs on the database's users. Then, with the server
    down while it should run, the next add starts it instead of saying "not running"."""
    import os
    import signal
    import time

    from tests.e2e.conftest import VPN

    rvpn.install_remote("hysteria2", "tj")
    rvpn.ok("user", "add", "alice", "--server", "tj")
    (name,) = rvpn.containers()
    alice = engine_users(rvpn, "tj")
    assert len(alice) == 1
    master = rvpn.tunnel().master_pid()
    assert master is not None
    old = rvpn.client.containers.get(name).id
    # The master is killed the moment the old container is gone: the add is between removing
    # it and creating the new one, with requests to the Docker engine still to make.
    add = subprocess.Popen(
        [str(VPN), "user", "add", "bob", "--server", "tj"],
        env=rvpn.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        mine = {"label": f"{LABEL_HOME}={rvpn.home_label}"}
        while any(c["Id"] == old for c in rvpn.client.api.containers(all=True, filters=mine)):
            assert time.monotonic() < deadline, "the old container was never removed"
            time.sleep(0.005)
        os.kill(master, signal.SIGKILL)
    finally:
        _, stderr = add.communicate(timeout=180)
    assert add.returncode == 8, stderr
    first = stderr.splitlines()[0]
    assert first.startswith(f"error: Lost the Docker engine at {rvpn.sshd.url}: "), stderr
    assert "rolled back" in first, stderr
    assert "database" not in stderr.lower(), stderr
    assert "Traceback" not in stderr
    status = rvpn.json("server", "status", "tj")
    assert isinstance(status, dict)
    assert status["healthy"], status
    assert database_users(rvpn, "tj") == ["alice"]
    assert engine_users(rvpn, "tj") == alice
    # Down while it should run (its container removed behind our back): a user add brings it up
    # on the new users, instead of "not running; the change takes effect when it starts".
    rvpn.client.containers.get(rvpn.containers()[0]).remove(force=True)
    added = rvpn.ok("user", "add", "carol", "--server", "tj", timeout=120)
    assert "not running" not in added.stdout + added.stderr
    assert "started" in added.stdout + added.stderr
    status = rvpn.json("server", "status", "tj")
    assert isinstance(status, dict)
    assert status["healthy"], status
    assert database_users(rvpn, "tj") == ["alice", "carol"]
    (carol,) = set(engine_users(rvpn, "tj")) - set(alice)
    assert sorted([*alice, carol]) == engine_users(rvpn, "tj")
