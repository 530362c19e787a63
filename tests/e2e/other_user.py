"""Calling the engines' control APIs as another local user (nobody, uid 65534) and as us, with the
standalone client intruder.py, and finding those APIs in a server's rendered config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user (our venv's may not be)


@dataclass
class Caller:
    """Runs intruder.py as `uid` (None: as we are)."""

    root: Path
    uid: int | None

    def _run(self, *args: str) -> dict[str, Any]:
        prefix = []
        if self.uid is not None:
            ids = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
            prefix = ["setpriv", *ids]
        done = subprocess.run(
            [*prefix, SYSTEM_PYTHON, str(self.root / "intruder.py"), *args],
            env={"PYTHONPATH": str(self.root), "PATH": "/usr/bin:/bin"},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"intruder.py failed: {done.stderr}"
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def grpc(self, address: str, path: str, body: bytes = b"", secret: str = "") -> dict[str, Any]:
        return self._run("grpc", address, path, body.hex(), *([secret] if secret else []))

    def http(self, method: str, url: str, body: object = None) -> dict[str, Any]:
        return self._run("http", method, url, *([] if body is None else [json.dumps(body)]))


@contextmanager
def callers() -> Iterator[tuple[Caller, Caller]]:
    """(nobody, us): intruder.py and the `h2` package it needs (with hpack and hyperframe)
    copied into a directory every user can read."""
    if os.geteuid() != 0:
        raise AssertionError("calling as another user needs root (setpriv)")
    if not Path(SYSTEM_PYTHON).exists() or shutil.which("setpriv") is None:
        raise AssertionError(f"{SYSTEM_PYTHON} and setpriv (util-linux) are needed")
    import h2
    import hpack
    import hyperframe

    root = Path(tempfile.mkdtemp(prefix="vpn-intruder-"))
    try:
        root.chmod(0o755)
        shutil.copy(Path(__file__).parent / "intruder.py", root / "intruder.py")
        for package in (h2, hpack, hyperframe):
            source = Path(package.__file__ or "").parent
            shutil.copytree(source, root / source.name)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield Caller(root, NOBODY), Caller(root, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def xray_api_addresses(config: dict[str, Any]) -> list[str]:
    """Every address Xray serves its API on: `api.listen` (TCP) and inbounds routed to the
    `api` outbound (a unix socket path, without Xray's ",MODE" suffix, or host:port)."""
    found = []
    if config["api"].get("listen"):
        found.append(config["api"]["listen"])
    routed = {
        tag
        for rule in config.get("routing", {}).get("rules", [])
        if rule.get("outboundTag") == config["api"]["tag"]
        for tag in rule.get("inboundTag", [])
    }
    for inbound in config["inbounds"]:
        if inbound.get("tag") in routed:
            listen = str(inbound["listen"]).split(",")[0]
            found.append(listen if listen.startswith("/") else f"{listen}:{inbound['port']}")
    return found


def singbox_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """sing-box's services by type ("api", "ssm-api")."""
    return {service["type"]: service for service in config.get("services", [])}
