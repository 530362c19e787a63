"""The Xray engine: VLESS, VMess and Trojan servers (over raw TCP, WebSocket, gRPC, HTTPUpgrade
or XHTTP, with TLS or REALITY; `vless-reality` is VLESS over raw TCP with REALITY) and Hysteria2
servers (QUIC) through the PyPI `Xray-core` binding (or an `xray` binary on PATH), one child
process per server. Users change live through the HandlerService API, never by a reload; on
Hysteria2 a removed user's open QUIC connection is cut by dropping its packets (nftables,
engines/flowcuts.py), or, without nftables, by a restart (config.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from secrets import token_hex, token_urlsafe
from typing import TYPE_CHECKING, Any, cast

from vpn_manager import kinds
from vpn_manager.engines import flowcuts, tls
from vpn_manager.engines.base import Changed, Counter, Files, Health, Session, Transport
from vpn_manager.engines.changes import refuse_others
from vpn_manager.engines.linkdata import Credential, LinkData, Reality, Stream, Tls
from vpn_manager.engines.ports import free_port, port_listening, port_open, udp_bound
from vpn_manager.engines.xray import config, keys, targets
from vpn_manager.engines.xray.sessions import cut_quic, cut_sessions
from vpn_manager.engines.xray.settings import XrayCredential, XraySecret, XraySettings
from vpn_manager.errors import EngineError, EngineMissing, InvalidInput
from vpn_manager.fsutil import atomic_write
from vpn_manager.proc import die_with_parent
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.engines.linkdata import Format, Network
    from vpn_manager.engines.xray.api import XrayApi
    from vpn_manager.models.server import ServerChange, ServerCreate

IN_CONTAINER = (
    "A server in a container cannot serve the local decoy page: give --decoy HOST:PORT, an "
    "HTTP site the container reaches."
)
VMESS_RAW_NO_DECOY = (
    "VMess over raw TCP cannot have a decoy (no fallback rule tells its streams from a "
    "probe's): use another transport, or VLESS or Trojan"
)

# The transports that are HTTP requests to a path.
HTTP = ("ws", "httpupgrade", "xhttp")
PASSWORD_BYTES = 18  # a Trojan password: token_urlsafe(18), 24 characters
REFUSED = 23  # the binding's exit code for a config Xray will not run
VALIDATE_DEADLINE = 5.0


def new_decoy(create: ServerCreate) -> str:
    """What a new TLS server answers non-clients with: the site given with --decoy, else the
    local page; none on VMess over raw TCP (refused with --decoy by ServerCreate) and none in a
    container without --decoy (nothing in the engine's image serves the page)."""
    if create.decoy is not None:
        return _decoy_for_runtime(create.decoy, create.runtime.value)
    transport = create.transport.value if create.transport is not None else "raw"
    if create.protocol.value == "vmess" and transport == "raw":
        return config.NO_DECOY
    return config.NO_DECOY if create.runtime.value == "docker" else config.LOCAL_DECOY


def _decoy_for_runtime(decoy: str, runtime: str) -> str:
    """`decoy` (--decoy), refused where the runtime cannot serve it: the local page in a
    container."""
    if decoy == config.LOCAL_DECOY and runtime == "docker":
        raise InvalidInput(IN_CONTAINER)
    return decoy


def no_decoy_advice(spec: ServerSpec) -> list[str]:
    """What a TLS server without a decoy shows a probe, and what gives it one: VMess over raw
    TCP never has one, a server in a container has one only with a site (--decoy HOST:PORT)."""
    if config.vmess_over_raw(spec):
        return [
            f"{spec.name} has no decoy: VMess over raw TCP cannot tell its streams from a "
            "probe's, so whoever connects without being a client gets no web page, which makes "
            "the server easier to spot. For a decoy, install it over another transport "
            "(`--transport ws`, `grpc`, `httpupgrade` or `xhttp`), or use VLESS or Trojan."
        ]
    if XraySettings.of(spec).decoy == config.NO_DECOY or (
        spec.runtime == "docker" and config.decoy_site(spec) is None
    ):
        return [
            f"{spec.name} has no decoy: nothing in the engine's container serves the local "
            "page, so whoever connects without being a client gets no web page, which makes "
            f"the server easier to spot: `vpn server set {spec.name} --decoy HOST:PORT` (an "
            "http:// site the container reaches)."
        ]
    return []


def _xray_binary() -> str | None:
    return shutil.which("xray")


def _check_installed() -> None:
    if _xray_binary():
        return
    try:
        found = importlib.util.find_spec("xray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise EngineMissing(
            "Xray is not installed: neither an `xray` binary on PATH nor the Xray-core package.",
            hint="Run scripts/setup, or: pip install Xray-core==1.8.26.13",
        )


def _api(spec: ServerSpec) -> XrayApi:
    """The server's API: on its unix socket where it has one, else on its 127.0.0.1 port (also
    while no socket is there: an engine started before vpn-manager used sockets still listens
    on TCP until it is restarted). The API module loads protobuf: imported here, when an API
    is called."""
    from vpn_manager.engines.xray.api import XrayApi

    socket = config.api_socket(spec)
    if socket is not None and not Path(socket).exists():
        socket = None
    return XrayApi(XraySettings.of(spec).api_port, unix=socket)


def _quic(spec: ServerSpec) -> bool:
    return config.is_hysteria(spec)


def _transport_values(spec: ServerSpec, change: ServerChange) -> dict[str, Any]:
    """The transport values `change` gives (path, host_header, service_name, xhttp_mode), each
    refused where the server's transport has no such value (as `vpn server install` refuses
    it); a Hysteria2 server has no transport options at all (refused by the caller)."""
    given = {name: getattr(change, name) for name in kinds.TRANSPORT_OPTIONS}
    given = {name: value for name, value in given.items() if value is not None}
    if not given or _quic(spec):
        return {}
    settings = XraySettings.of(spec)
    network = kinds.Network(settings.transport)
    for name in given:
        if why := kinds.transport_misfit(name, network):
            raise InvalidInput(
                f"{why}: {spec.name} is {config.inbound_protocol(spec)} over {network.value}."
            )
    return given


class XrayEngine:
    name = "xray"

    def new_server(
        self, create: ServerCreate, ports: Callable[[], int], keys_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        settings = XraySettings(api_port=ports(), allow_private=create.allow_private)
        secret = XraySecret()
        if create.protocol.value == "hysteria2":  # QUIC with TLS; nothing to choose
            hysteria = XraySettings(
                api_port=settings.api_port,
                allow_private=create.allow_private,
                network="hysteria",
                security="tls",
                tls=tls.certificate(create, keys_dir),
                decoy=config.NO_DECOY,  # non-clients get Xray's masquerade, HTTP/3 404
            )
            return hysteria.to_dict(), secret.to_dict()
        if create.transport is not None and create.security is not None:  # vless, trojan, vmess
            network = create.transport.value
            settings = dataclasses.replace(
                settings,
                network=network,
                security=create.security.value,
                # A path nobody guesses: what asks for another one is not a client.
                path=(create.path or f"/{token_hex(8)}") if network in HTTP else None,
                host_header=create.host_header,
                service_name=(create.service_name or token_hex(8)) if network == "grpc" else None,
                xhttp_mode=create.xhttp_mode,
            )
        if create.reality:
            assert create.sni is not None, "a REALITY server is given its --sni"
            private, public = keys.new_key_pair()
            settings = dataclasses.replace(
                settings,
                sni=create.sni,
                dest=create.dest or f"{create.sni}:443",
                public_key=public,
                short_ids=tuple(keys.new_short_ids()),
                fingerprint="chrome",
            )
            secret = XraySecret(private_key=private)
        else:
            settings = dataclasses.replace(settings, tls=tls.certificate(create, keys_dir))
            settings = dataclasses.replace(settings, decoy=new_decoy(create))
        return settings.to_dict(), secret.to_dict()

    def rotate_keys(self, spec: ServerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        settings = XraySettings.of(spec)
        if not settings.reality:
            if not settings.certificate.self_signed:
                raise InvalidInput(
                    f"A {spec.protocol} server with TLS has no server key to rotate (its "
                    "certificate is yours: replace it instead)."
                )
            renewed = dataclasses.replace(settings, tls=tls.reissue(settings.certificate))
            return renewed.to_dict(), dict(spec.secret)
        private, public = keys.new_key_pair()
        settings = dataclasses.replace(
            settings, public_key=public, short_ids=tuple(keys.new_short_ids())
        )
        secret = dataclasses.replace(XraySecret.of(spec), private_key=private)
        return settings.to_dict(), secret.to_dict()

    def change(self, spec: ServerSpec, change: ServerChange, keys_dir: Path) -> Changed:
        """REALITY's target (--sni, --dest), or a TLS server's certificate and the name in it
        (--sni, --cert/--key) and decoy (--decoy), the transport's values (--path,
        --host-header, --service-name, --xhttp-mode; the decoy front's path rule is rendered
        from the same path) and --allow-private. A target that was the default (SNI:443)
        follows a new SNI unless --dest is given."""
        settings = dataclasses.replace(XraySettings.of(spec), **_transport_values(spec, change))
        if not settings.reality:
            allowed: tuple[str, ...] = ("sni", "cert_file", "key_file")
            allowed += () if _quic(spec) else ("decoy", *kinds.TRANSPORT_OPTIONS)
            refuse_others(change, spec.protocol, allowed)
            if change.decoy is not None:
                if config.vmess_over_raw(spec):
                    raise InvalidInput(f"{VMESS_RAW_NO_DECOY}.")
                decoy = _decoy_for_runtime(change.decoy, spec.runtime)
                settings = dataclasses.replace(settings, decoy=decoy)
            if change.sni is not None or change.cert_file is not None:
                renewed = tls.new_certificate(spec.name, settings.certificate, change, keys_dir)
                settings = dataclasses.replace(settings, tls=renewed)
            if change.allow_private is not None:
                settings = dataclasses.replace(settings, allow_private=change.allow_private)
            return Changed(settings.to_dict(), dict(spec.secret))
        refuse_others(change, spec.protocol, ("sni", "dest", *kinds.TRANSPORT_OPTIONS))
        updates: dict[str, Any] = {}
        if change.sni is not None:
            updates["sni"] = change.sni
            if change.dest is None and settings.dest == f"{settings.sni}:443":
                updates["dest"] = f"{change.sni}:443"
        if change.dest is not None:
            updates["dest"] = change.dest
        if change.allow_private is not None:
            updates["allow_private"] = change.allow_private
        return Changed(dataclasses.replace(settings, **updates).to_dict(), dict(spec.secret))

    def advice(self, spec: ServerSpec) -> list[str]:
        settings = XraySettings.of(spec)
        if not settings.reality:
            return no_decoy_advice(spec)
        assert settings.sni is not None
        assert settings.dest is not None
        return targets.advice(spec.name, settings.sni, settings.dest, spec.port)

    def new_credential(
        self,
        spec: ServerSpec,
        password: str | None = None,
        taken: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        if password is not None:
            raise InvalidInput(
                f"{spec.protocol} users get generated credentials; --password is for proxies."
            )
        if config.inbound_protocol(spec) in ("trojan", "hysteria"):
            return XrayCredential(password=token_urlsafe(PASSWORD_BYTES)).to_dict()
        return XrayCredential(uuid=str(uuid.uuid4())).to_dict()

    def control_ports(self, spec: ServerSpec) -> list[int]:
        return [] if config.api_socket(spec) else XraySettings.of(spec).control_ports()

    def transports(self, spec: ServerSpec) -> tuple[Transport, ...]:
        return ("udp",) if _quic(spec) else ("tcp",)

    def live_users(self, spec: ServerSpec) -> bool:
        return True  # HandlerService

    def cuts_sessions(self, spec: ServerSpec) -> bool:
        """On Hysteria2 only with nftables: Xray checks a user when a QUIC connection
        authenticates, never again, so a removed user's open connection keeps working (and
        opening streams), and one UDP socket serves every client (`ss -K` cannot single one
        out); its packets are dropped instead (engines/flowcuts.py)."""
        return not _quic(spec) or flowcuts.available()

    async def reload(self, spec: ServerSpec, pid: int) -> None:
        raise EngineError("Xray changes users live; it is never reloaded.")  # pragma: no cover

    def render(self, spec: ServerSpec, clients: list[Client], files: Files) -> str:
        return config.render_text(spec, clients, files)

    def before_start(self, spec: ServerSpec, clients: list[Client], files: Files) -> None:
        return  # the config is all it reads

    def argv(self, spec: ServerSpec | None, config_file: Path) -> list[str]:
        """The binding in our child process; an `xray` binary on PATH runs under the same
        child, which serves the local decoy page beside it (engines/xray/child.py)."""
        _check_installed()
        binary = _xray_binary()
        child = [sys.executable, "-m", "vpn_manager.engines.xray.child"]
        if binary:
            return [*child, "--binary", binary, str(config_file)]
        return [*child, str(config_file)]

    async def validate(self, text: str, scratch: Path) -> None:
        """Run the config for real in a throwaway process on free ports: Xray's own verdict.

        The binding has no `-test`; a refused config makes it exit with code 23, an accepted one
        starts listening. Ports are swapped for free ones so the running server is not disturbed;
        that the real port can be bound is checked by the restart's health probe."""
        data = json.loads(text)
        quic = data["inbounds"][0].get("protocol") == "hysteria"
        probe_port = free_port()
        data["inbounds"][0]["port"] = probe_port
        data["inbounds"][0]["listen"] = "127.0.0.1"
        data["log"] = {"loglevel": "warning"}
        with (
            tempfile.TemporaryDirectory(prefix=".validate-", dir=scratch) as tmp,
            tempfile.TemporaryDirectory(prefix="vpn-xray-") as private,  # 0700, short path
        ):
            # Unix sockets (the API's, the real inbound's behind a front, the decoy's) move
            # to a private directory of the candidate's own.
            for inbound in data["inbounds"]:
                listen = inbound.get("listen", "")
                if listen.startswith("/"):
                    name = Path(listen.split(",")[0]).name
                    inbound["listen"] = f"{private}/{name},0600"
                for rule in (inbound.get("settings") or {}).get("fallbacks", []):
                    dest = rule.get("dest")
                    if isinstance(dest, str) and dest.startswith("/"):
                        rule["dest"] = f"{private}/{Path(dest).name}"
            if "listen" in data["api"]:
                data["api"]["listen"] = f"127.0.0.1:{free_port()}"
            candidate = Path(tmp) / "candidate.json"
            atomic_write(candidate, json.dumps(data))
            argv = self.argv(None, candidate)
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=die_with_parent(),  # a killed command leaves no candidate Xray behind
                # Its own session: a Ctrl-C in our terminal is ours to handle (we end it below),
                # not a death of its own in the middle of the verdict.
                start_new_session=True,
            )
            try:
                await self._await_verdict(process, probe_port, quic)
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                        process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), 3)
                    except TimeoutError:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                        await process.wait()

    async def _await_verdict(
        self, process: asyncio.subprocess.Process, port: int, quic: bool = False
    ) -> None:
        """Accepted once the candidate listens on its port (a QUIC server: has bound it)."""
        started = time.monotonic()
        deadline = started + VALIDATE_DEADLINE
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            if quic:
                # Where the socket table cannot tell (None), a start that lasts a second is.
                bound = udp_bound("127.0.0.1", port)
                if bound or (bound is None and time.monotonic() - started > 1.0):
                    return
            elif port_open("127.0.0.1", port, 0.2):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.02)
        if process.returncode is None:
            raise EngineError(
                f"Xray did not start on the candidate config within {VALIDATE_DEADLINE:.0f} s."
            )
        err = b""
        if process.stderr is not None:
            err = await process.stderr.read()
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        why = "Xray refused the config" if process.returncode == REFUSED else "Xray exited"
        raise EngineError(
            f"{why} (exit code {process.returncode}){': ' + detail[0] if detail[0] else ''}.",
            hint="Nothing was changed. Check the values given; `vpn doctor` will say more.",
        )

    async def probe(self, spec: ServerSpec) -> Health:
        async with _api(spec) as api:
            api_ok, why = await api.ping()
        if _quic(spec):
            # UDP: a TCP connect proves nothing. A native server's socket is looked up; in a
            # container only the engine answering can tell.
            bound = udp_bound(spec.listen, spec.port) if spec.runtime == "native" else None
            port_ok = api_ok if bound is None else bound
        else:
            port_ok = await asyncio.to_thread(port_listening, spec)
        detail = (
            "healthy"
            if port_ok and api_ok
            else (f"port {spec.port} {'open' if port_ok else 'not accepting'}; API {why}")
        )
        return Health(port_ok, api_ok, detail)

    def own_log_line(self, line: str) -> bool:
        # The API on a unix socket is an inbound routed to the API, so the access log records
        # each call: "from 0.0.0.0:0 accepted tcp:127.0.0.1:0 [api-in -> api]".
        return line.endswith(config.OWN_ACCESS)

    async def after_start(self, spec: ServerSpec, clients: list[Client]) -> None:
        return  # the users are in the config file

    async def after_stop(self, spec: ServerSpec) -> None:
        return  # nothing lives outside the process

    async def users(self, spec: ServerSpec) -> set[str]:
        async with _api(spec) as api:
            return await api.users(config.inbound_tag(spec))

    async def add_clients(self, spec: ServerSpec, clients: list[Client]) -> None:
        async with _api(spec) as api:
            await api.add_users(
                config.inbound_tag(spec),
                [config.client_entry(spec, c) for c in clients],
                config.inbound_protocol(spec),
            )

    async def remove_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        """Removed at once for new connections; their open ones are cut with `ss -K` (TCP) or
        by dropping their packets (Hysteria2's QUIC, see cuts_sessions)."""
        async with _api(spec) as api:
            await api.remove_users(config.inbound_tag(spec), [c.email for c in clients])
        return await self.cut_clients(spec, clients, files)

    async def cut_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        cut = cut_quic if _quic(spec) else cut_sessions
        return await cut(spec, [c.email for c in clients], files.access_log)

    async def counters(self, spec: ServerSpec) -> list[Counter]:
        """Xray's per-user counters (StatsService, no reset): one per email, for the process's
        life; they outlive RemoveUser, so a re-added user continues its counter."""
        async with _api(spec) as api:
            traffic = await api.user_traffic()
        return [Counter(email, email, up, down) for email, (up, down) in traffic.items()]

    def follower(self, spec: ServerSpec) -> None:
        """Per-user counters since start: a poll misses nothing, there is nothing to follow."""
        return

    async def sessions(self, spec: ServerSpec) -> list[Session]:
        """Xray's online-IP lists (policy statsUserOnline): an IP is listed while the user has
        a connection open from it. Connections from 127.0.0.1 are never listed."""
        async with _api(spec) as api:
            online = await api.online()
        return [
            Session(email, ip, seen) for email, ips in online.items() for ip, seen in ips.items()
        ]

    async def cut_ips(self, spec: ServerSpec, user: str, ips: set[str], files: Files) -> int:
        cut = cut_quic if _quic(spec) else cut_sessions
        return await cut(spec, [user], files.access_log, ips)

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        settings, credential = XraySettings.of(spec), XrayCredential.of(client)
        protocol = config.inbound_protocol(spec)
        if _quic(spec):
            # The same link as a sing-box Hysteria2 server's: pinned only where self-signed.
            cert = settings.certificate
            pin = cert.cert_sha256 if cert.self_signed else None
            return LinkData.of(
                "hysteria2",
                spec,
                client,
                credential=Credential(password=credential.password or ""),
                tls=Tls(cert.server_name, cert.self_signed, pin),
            )
        stream = Stream(
            network=cast("Network", settings.transport),
            path=settings.path or ("/" if settings.transport in HTTP else ""),
            host=settings.host_header or "",
            service_name=settings.service_name or "",
            mode=settings.xhttp_mode or "",
        )
        reality = security = None
        if settings.reality:
            assert settings.sni is not None
            assert settings.public_key is not None
            reality = Reality(
                server_name=settings.sni,
                public_key=settings.public_key,
                short_id=(settings.short_ids or ("",))[0],
                fingerprint=settings.fingerprint or "chrome",
            )
        else:
            cert = settings.certificate
            # A self-signed certificate cannot be checked against a CA: links pin it by its
            # SHA-256 where their format can, else say insecure.
            security = Tls(cert.server_name, cert.self_signed, cert.cert_sha256)
        return LinkData.of(
            cast("Format", protocol),
            spec,
            client,
            credential=Credential(uuid=credential.uuid or "", password=credential.password or ""),
            tls=security,
            reality=reality,
            stream=stream,
        )
