"""The ssh tunnel's pure parts, without ssh: addresses, options from the settings, and where its
sockets go."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpn_manager.errors import InvalidInput
from vpn_manager.runtimes.docker.ssh import MAX_SOCKET_PATH, SshTarget, Tunnel
from vpn_manager.settings import DockerSshSettings


def test_ssh_targets() -> None:
    target = SshTarget("ssh://root@vpn.example.org:2222")
    assert (target.user, target.host, target.port) == ("root", "vpn.example.org", 2222)
    assert target.destination == "root@vpn.example.org"
    assert target.shown == "root@vpn.example.org:2222"
    bare = SshTarget("ssh://vpn.example.org")
    assert (bare.user, bare.port, bare.destination) == (None, None, "vpn.example.org")


@pytest.mark.parametrize("url", ["tcp://vpn.example.org:2375", "ssh://", "ssh://host:port"])
def test_bad_ssh_targets(url: str) -> None:
    with pytest.raises(InvalidInput):
        SshTarget(url)


def test_options_come_from_the_settings(tmp_path: Path) -> None:
    settings = DockerSshSettings(
        config_file="/etc/vpn/ssh_config",
        identity_file="/etc/vpn/id_ed25519",
        known_hosts_file="/etc/vpn/known_hosts",
    )
    tunnel = Tunnel("ssh://vpn@host:2200", "/home", tmp_path, settings)
    options = tunnel._options()
    assert options[:2] == ["-o", "BatchMode=yes"]  # never a password prompt
    assert options[4:6] == ["-F", "/etc/vpn/ssh_config"]
    assert "-i" in options
    assert "UserKnownHostsFile=/etc/vpn/known_hosts" in options
    assert options[-2:] == ["-p", "2200"]
    plain = Tunnel("ssh://host", "/home", tmp_path, DockerSshSettings())._options()
    assert "-F" not in plain
    assert "-p" not in plain


def test_sockets_go_to_the_run_directory_unless_its_path_is_too_long(tmp_path: Path) -> None:
    short = Tunnel("ssh://h", "/a", Path("/run/v"), DockerSshSettings())
    assert short.control.parent == Path("/run/v/ssh")
    deep = tmp_path / ("d" * 80)
    far = Tunnel("ssh://h", "/a", deep, DockerSshSettings())
    assert not far.control.is_relative_to(deep)
    assert len(str(far.control)) <= MAX_SOCKET_PATH
    # Each (home, host) has its own sockets.
    assert Tunnel("ssh://h", "/b", Path("/run/v"), DockerSshSettings()).control != short.control
    assert far.docker_url == f"unix://{far.docker_socket}"
