"""Every link format, transport and security Xray serves, proved with real engines on loopback:
one real Xray SERVER (config written here: TLS with a self-signed certificate made here, REALITY
on raw, grpc and xhttp) holds one inbound per combination; each combination's link is written by
`vpn_manager.links` from an engine-style `LinkData`, read back with `parse_link`, and one real Xray
CLIENT carries each link's `xray_outbound()` (only its tag changed, so one process holds them
all, each behind its own SOCKS port). A sing-box client does the same for the transports its
build has (raw, ws, httpupgrade: the shipped build has no gRPC and sing-box has no XHTTP, and
neither REALITY nor uTLS). Bytes move through every one of them to a local HTTP backend.

One server and one client process each, not one per case: a REALITY server's first connection
takes 6-7 s, and eighteen of them in a row would take minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SNI, _wait_for_port, curl_via
from tests.e2e.net import (
    BACKEND_PAGE,
    end_process,
    free_port,
    http_backend,
    self_signed,
    tls13_site,
)
from vpn_manager.engines.linkdata import Credential, LinkData, Reality, Stream, Tls
from vpn_manager.engines.tls import cert_sha256
from vpn_manager.engines.xray.keys import new_key_pair
from vpn_manager.links import parse_link, share_link
from vpn_manager.links.clients import XrayLink

TLS_NAME = "vpn.test"
SHORT_ID = "ab12cd34"
PASSWORD = "tr0jan-pass"
USER = str(uuid.UUID(int=0x5EED))


@dataclass(frozen=True)
class Case:
    format: str  # vless, trojan, vmess
    network: str
    security: str  # tls, reality

    @property
    def id(self) -> str:
        return f"{self.format}-{self.network}-{self.security}"

    @property
    def stream(self) -> Stream:
        if self.network == "grpc":
            return Stream("grpc", service_name=f"svc-{self.format}")
        if self.network == "raw":
            return Stream()
        mode = "packet-up" if self.id == "vless-xhttp-tls" else ""
        host = "" if self.security == "reality" else "cdn.test"
        return Stream(self.network, path=f"/{self.id}", host=host, mode=mode)  # type: ignore[arg-type]


CASES = [
    *(
        Case(fmt, network, "tls")
        for fmt in ("vless", "trojan", "vmess")
        for network in ("raw", "ws", "grpc", "httpupgrade", "xhttp")
    ),
    *(Case("vless", network, "reality") for network in ("raw", "grpc", "xhttp")),
]
SINGBOX_NETWORKS = ("raw", "ws", "httpupgrade")


@dataclass
class Rig:
    links: dict[str, str]  # case id -> share link
    xray: dict[str, int]  # case id -> the Xray client's SOCKS port
    singbox: dict[str, int]  # case id -> the sing-box client's mixed port
    backend: int


def _server_stream(case: Case, cert: Path, key: Path, site: int, private: str) -> dict[str, Any]:
    stream = case.stream
    settings: dict[str, Any]
    if case.network == "raw":
        settings = {}
    elif case.network == "grpc":
        settings = {"grpcSettings": {"serviceName": stream.service_name}}
    else:
        block: dict[str, Any] = {"path": stream.path}
        if stream.host:
            block["host"] = stream.host
        if stream.mode:
            block["mode"] = stream.mode
        settings = {f"{case.network}Settings": block}
    if case.security == "tls":
        security: dict[str, Any] = {
            "security": "tls",
            "tlsSettings": {"certificates": [{"certificateFile": str(cert), "keyFile": str(key)}]},
        }
    else:
        security = {
            "security": "reality",
            "realitySettings": {
                "target": f"127.0.0.1:{site}",
                "serverNames": [SNI],
                "privateKey": private,
                "shortIds": [SHORT_ID],
            },
        }
    return {"network": case.network, **settings, **security}


def _inbound(case: Case, port: int, stream: dict[str, Any]) -> dict[str, Any]:
    if case.format == "vless":
        flow = "xtls-rprx-vision" if case.network == "raw" else ""
        settings: dict[str, Any] = {"clients": [{"id": USER, "flow": flow}], "decryption": "none"}
    elif case.format == "trojan":
        settings = {"clients": [{"password": PASSWORD}]}
    else:
        settings = {"clients": [{"id": USER}]}
    return {
        "tag": case.id,
        "listen": "127.0.0.1",
        "port": port,
        "protocol": case.format,
        "settings": settings,
        "streamSettings": stream,
    }


def _link_data(case: Case, port: int, pin: str, public: str) -> LinkData:
    """What an Xray engine says of the case's server, for the links package to write."""
    credential = Credential(uuid=USER, password=PASSWORD)
    tls = Tls(TLS_NAME, insecure=True, cert_sha256=pin) if case.security == "tls" else None
    reality = Reality(SNI, public, SHORT_ID) if case.security == "reality" else None
    return LinkData(
        format=case.format,  # type: ignore[arg-type]
        server=case.id,
        name=f"alice@{case.id}",
        host="127.0.0.1",
        port=port,
        credential=credential,
        tls=tls,
        reality=reality,
        stream=case.stream,
    )


def _start(command: list[str], config: dict[str, Any], path: Path, port: int) -> Any:
    path.write_text(json.dumps(config))
    with path.with_suffix(".log").open("wb") as log:  # kept for a failing run's reader
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process)
    except BaseException:
        end_process(process)
        raise
    return process


def _xray_client(links: dict[str, str], socks: dict[str, int]) -> dict[str, Any]:
    """One Xray client: each link's own `xray_outbound()`, behind its own SOCKS port."""
    outbounds, inbounds, rules = [], [], []
    for case_id, port in socks.items():
        link = parse_link(links[case_id])
        assert isinstance(link, XrayLink)
        outbounds.append({**link.xray_outbound(), "tag": f"out-{case_id}"})
        inbounds.append(
            {
                "tag": f"in-{case_id}",
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "socks",
                "settings": {"udp": True},
            }
        )
        rules.append({"inboundTag": [f"in-{case_id}"], "outboundTag": f"out-{case_id}"})
    return {
        "log": {"loglevel": "warning"},
        "inbounds": inbounds,
        "outbounds": outbounds,
        "routing": {"rules": rules},
    }


def _singbox_client(links: dict[str, str], mixed: dict[str, int]) -> dict[str, Any]:
    """One sing-box client: each link's own `singbox_outbound()`, behind its own mixed port."""
    outbounds, inbounds, rules = [], [], []
    for case_id, port in mixed.items():
        outbounds.append({**parse_link(links[case_id]).singbox_outbound(), "tag": f"out-{case_id}"})
        inbounds.append(
            {"type": "mixed", "tag": f"in-{case_id}", "listen": "127.0.0.1", "listen_port": port}
        )
        rules.append({"inbound": [f"in-{case_id}"], "outbound": f"out-{case_id}"})
    return {
        "log": {"level": "warn"},
        "inbounds": inbounds,
        "outbounds": outbounds,
        "route": {"rules": rules},
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    from vpn_manager.engines.singbox.engine import binary

    work = tmp_path_factory.mktemp("transports")
    (work / "site").mkdir()
    cert, key = self_signed(work, TLS_NAME)
    pin = cert_sha256(cert)
    private, public = new_key_pair()
    processes: list[Any] = []
    with http_backend() as backend, tls13_site(work / "site", SNI) as site:
        try:
            ports = {case.id: free_port() for case in CASES}
            server = {
                "log": {"loglevel": "warning"},
                "inbounds": [
                    _inbound(case, ports[case.id], _server_stream(case, cert, key, site, private))
                    for case in CASES
                ],
                "outbounds": [
                    {
                        "protocol": "freedom",
                        "settings": {"finalRules": [{"action": "allow", "ip": ["127.0.0.0/8"]}]},
                    }
                ],
            }
            xray = [sys.executable, "-m", "vpn_manager.engines.xray.child"]
            last = ports[CASES[-1].id]
            processes.append(_start([*xray, str(work / "s.json")], server, work / "s.json", last))
            links = {
                case.id: share_link(_link_data(case, ports[case.id], pin, public)) for case in CASES
            }
            socks = {case.id: free_port() for case in CASES}
            path = work / "c.json"
            client = _xray_client(links, socks)
            processes.append(_start([*xray, str(path)], client, path, list(socks.values())[-1]))
            mixed = {
                case.id: free_port()
                for case in CASES
                if case.security == "tls" and case.network in SINGBOX_NETWORKS
            }
            path = work / "sb.json"
            command = [binary(), "run", "-c", str(path), "--disable-color"]
            singbox = _singbox_client(links, mixed)
            processes.append(_start(command, singbox, path, list(mixed.values())[-1]))
            rig = Rig(links, socks, mixed, backend)
            # Warm the REALITY inbounds up together: each first connection takes 6-7 s.
            reality = [case.id for case in CASES if case.security == "reality"]
            url = f"http://127.0.0.1:{backend}/"
            with ThreadPoolExecutor(len(reality)) as pool:
                list(pool.map(lambda case_id: curl_via(socks[case_id], url), reality))
            yield rig
        finally:
            for process in reversed(processes):
                end_process(process)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_xray_client_from_the_link_moves_bytes(rig: Rig, case: Case) -> None:
    link = rig.links[case.id]
    assert link.startswith(f"{case.format}://")
    url = f"http://127.0.0.1:{rig.backend}"
    socks = rig.xray[case.id]
    assert curl_via(socks, f"{url}/") == BACKEND_PAGE.decode()
    assert curl_via(socks, f"{url}/bytes/300000", attempts_for=5) == "x" * 300_000


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.security == "tls" and c.network in SINGBOX_NETWORKS],
    ids=lambda case: case.id,
)
def test_singbox_client_from_the_link_moves_bytes(rig: Rig, case: Case) -> None:
    url = f"http://127.0.0.1:{rig.backend}"
    port = rig.singbox[case.id]
    assert curl_via(port, f"{url}/") == BACKEND_PAGE.decode()
    assert curl_via(port, f"{url}/bytes/300000", attempts_for=5) == "x" * 300_000
