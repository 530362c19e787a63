"""`vpn serve` hands the validated settings to the lean service process through a pipe."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from tests.cli_helpers import Cli, error_line, vpn_script, write_config
from tests.e2e.net import free_port
from vpn_manager.services.root import DockerPlain, ServiceConfig
from vpn_manager.settings import Paths, load_settings


def test_service_config_keeps_every_value(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_config(
        home,
        'timezone = "Europe/Berlin"\n'
        '[database]\nurl = "sqlite:////srv/vpn.db"\nbusy_timeout_ms = 900\n'
        "[service]\ndevice_ban_s = 7\n"
        '[docker]\nhost = "unix:///run/other.sock"\n[docker.images]\nsing_box = "local/sb:1"\n'
        '[docker.ssh]\nidentity_file = "/keys/id"\n',
    )
    settings = load_settings(Paths.from_env({"VPN_HOME": str(home)}), env={})
    config = ServiceConfig.from_settings(settings)
    assert config == ServiceConfig.from_json(config.to_json())
    assert config.database_url == "sqlite+aiosqlite:////srv/vpn.db"
    assert (config.busy_timeout_ms, config.timezone, config.device_ban_s) == (
        900,
        "Europe/Berlin",
        7,
    )
    assert config.docker == DockerPlain(
        "unix:///run/other.sock",
        settings.docker.images.model_dump(),
        settings.docker.ssh.model_dump(),
    )
    assert config.docker.image("sing_box") == settings.docker.image("sing_box") == "local/sb:1"
    assert config.docker.ssh == settings.docker.ssh
    assert config.docker.ssh.identity_file == "/keys/id"


def test_the_service_runs_on_the_settings_without_pydantic(tmp_path: Path) -> None:
    """Its settings come through the pipe, and neither a round nor a metrics scrape loads
    pydantic (the read models): about 8 MB of the service's 60 MB budget."""
    cli = Cli(tmp_path)
    elsewhere = tmp_path / "elsewhere.db"
    write_config(cli.home, f'[database]\nurl = "sqlite:///{elsewhere}"\n')
    metrics = free_port()
    service = subprocess.Popen(
        [str(vpn_script()), "serve", "--interval", "0.5", "--metrics-port", str(metrics)],
        env=cli.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not elsewhere.exists() and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.1)
        assert elsewhere.exists(), "the service did not use the configured database"
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()
        assert b'vpn_users{status="active"}' not in page  # no users yet, and it answered
        assert b"# TYPE vpn_server_up gauge" in page
        maps = Path(f"/proc/{service.pid}/maps").read_text()
        assert "sqlalchemy" in maps  # the right process: the service, after its first round
        assert "pydantic_core" not in maps
        assert str(elsewhere) not in Path(f"/proc/{service.pid}/cmdline").read_text()
    finally:
        service.terminate()
        _, stderr = service.communicate(timeout=10)
    assert service.returncode == 0, stderr.decode()
    assert not (cli.home / "data" / "vpn.db").exists()


def test_bad_settings_stop_serve_before_the_service_starts(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    write_config(cli.home, "[service]\ndevice_ban_s = -1\n")
    result = cli("serve", "--interval", "0.5")
    assert "device_ban_s" in error_line(result, 6)
