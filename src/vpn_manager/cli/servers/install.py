"""`vpn server install|rotate-keys|set`: install a server, and change its keys or settings (the
proxies' `vpn proxy add` installs through `install_fields` too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.confirm import YesOption, confirm
from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.cli.servers.args import AllowPrivate, HostOpt, Listen, ServerName
from vpn_manager.cli.servers.display import show, warn
from vpn_manager.errors import InvalidInput
from vpn_manager.models import validated
from vpn_manager.models.server import ServerChange, ServerCreate

if TYPE_CHECKING:
    from vpn_manager.cli.context import AppContext
    from vpn_manager.cli.output import Output
    from vpn_manager.models.server import ServerChanged

# The ciphers `--method` takes (engines/singbox/secrets.py SS_METHODS; a test keeps them equal).
METHODS_HELP = (
    "shadowsocks: 2022-blake3-aes-128-gcm (default), 2022-blake3-aes-256-gcm, aes-256-gcm, "
    "chacha20-ietf-poly1305 (default with --outline), aes-128-gcm."
)
NEW_METHOD_HELP = (
    "shadowsocks: a new cipher: 2022-blake3-aes-128-gcm, 2022-blake3-aes-256-gcm, aes-256-gcm, "
    "chacha20-ietf-poly1305 or aes-128-gcm (every user's link changes)."
)

DECOY_HELP = (
    "vless, trojan, vmess with tls: what a visitor who is not a client (a browser, a probe) "
    "gets: `local`, a small local page (the default), or an http:// site at HOST:PORT, to which "
    "the request is forwarded as plain HTTP. VMess over raw TCP has none; in a container, only "
    "a site."
)


def install_fields(ctx: typer.Context, fields: dict[str, Any], fmt: FormatOption) -> None:
    create = validated(ServerCreate, {k: v for k, v in fields.items() if v is not None})
    context = app_context(ctx)
    server = context.servers(lambda s: s.install(create))
    show(ctx, server, fmt)
    context.output().note(
        f"{server.name} is running on port {server.port}. "
        f"Add a user: vpn user add NAME --server {server.name}"
    )
    warn(context.output(), context.servers(lambda s: s.warnings(server.name)))


def install(
    ctx: typer.Context,
    protocol: Annotated[
        str,
        typer.Argument(
            metavar="PROTOCOL",
            help="vless, vless-reality, trojan, vmess, hysteria2 (Xray), shadowsocks, tuic "
            "(sing-box) or wireguard (proxies: `vpn proxy add`).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="A name for the server.")],
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="The port clients connect to.")
    ],
    sni: Annotated[
        str | None,
        typer.Option(
            "--sni",
            metavar="SERVER_NAME",
            help="REALITY (vless-reality, --security reality): the real site clients pretend to "
            "visit: one that speaks TLS 1.3 "
            "with X25519 and h2, near this server, not a household name (README: REALITY "
            "target); TLS protocols: the name in the certificate (default: --host).",
        ),
    ] = None,
    dest: Annotated[
        str | None,
        typer.Option(
            "--dest",
            metavar="HOST:PORT",
            help="REALITY: where probes and non-clients are forwarded (default: SNI:443).",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            metavar="CIPHER",
            help=METHODS_HELP,
        ),
    ] = None,
    outline: Annotated[
        bool,
        typer.Option(
            "--outline",
            help="shadowsocks: a cipher Outline's apps import (they have no 2022 ciphers), "
            "kept so on later changes.",
        ),
    ] = False,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            metavar="KEY",
            help="shadowsocks 2022: the server key (base64; generated if not given).",
        ),
    ] = None,
    cert: Annotated[
        str | None,
        typer.Option(
            "--cert", metavar="FILE", help="TLS protocols: your certificate (else self-signed)."
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="FILE", help="TLS protocols: its private key.")
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            metavar="NAME",
            help="vless, trojan, vmess: raw (TCP, the default), ws, grpc, httpupgrade or xhttp.",
        ),
    ] = None,
    security: Annotated[
        str | None,
        typer.Option(
            "--security",
            metavar="NAME",
            help="vless, trojan, vmess: tls or reality (REALITY: vless over raw, grpc or xhttp); "
            "default: reality for vless over raw, else tls.",
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="PATH",
            help="ws, httpupgrade, xhttp: the HTTP path clients ask for (default: a random one).",
        ),
    ] = None,
    service_name: Annotated[
        str | None,
        typer.Option(
            "--service-name",
            metavar="NAME",
            help="grpc: the gRPC service name (default: a random one).",
        ),
    ] = None,
    host_header: Annotated[
        str | None,
        typer.Option(
            "--host-header",
            metavar="NAME",
            help="ws, httpupgrade, xhttp: the Host header clients send (a CDN or reverse "
            "proxy's name; default: the address they connect to).",
        ),
    ] = None,
    xhttp_mode: Annotated[
        str | None,
        typer.Option(
            "--xhttp-mode",
            metavar="MODE",
            help="xhttp: auto (the default), packet-up, stream-up or stream-one.",
        ),
    ] = None,
    decoy: Annotated[
        str | None,
        typer.Option(
            "--decoy",
            metavar="HOST:PORT",
            help=DECOY_HELP,
        ),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", metavar="CIDR", help="wireguard: peer addresses (10.13.13.0/24)."),
    ] = None,
    subnet6: Annotated[
        str | None,
        typer.Option("--subnet6", metavar="CIDR", help="wireguard: IPv6 peer addresses too."),
    ] = None,
    dns: Annotated[
        str | None,
        typer.Option(
            "--dns", metavar="ADDRS", help="wireguard: DNS servers for clients (1.1.1.1)."
        ),
    ] = None,
    mtu: Annotated[
        int | None, typer.Option("--mtu", metavar="N", help="wireguard: interface MTU (1420).")
    ] = None,
    allowed_ips: Annotated[
        str | None,
        typer.Option(
            "--allowed-ips",
            metavar="CIDRS",
            help="wireguard: what clients route through the tunnel (0.0.0.0/0, ::/0).",
        ),
    ] = None,
    host: HostOpt = None,
    listen: Listen = "0.0.0.0",
    allow_private: AllowPrivate = False,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            metavar="RUNTIME",
            help="native (a process of ours) or docker (a container); default: setting runtime.",
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            metavar="IMAGE",
            help="docker: the engine's image (default: setting docker.images.ENGINE).",
        ),
    ] = None,
    docker_host: Annotated[
        str | None,
        typer.Option(
            "--docker-host",
            metavar="HOST",
            help="docker: unix://…, tcp://127.0.0.1:PORT, ssh://user@host[:port] or a context "
            "name (default: setting docker.host, else DOCKER_HOST or the local socket).",
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Install a server and start it (keys and certificates are made once and kept)."""
    install_fields(
        ctx,
        {
            "name": name,
            "protocol": protocol,
            "port": port,
            "sni": sni,
            "dest": dest,
            "method": method,
            "outline": outline,
            "password": password,
            "cert_file": cert,
            "key_file": key,
            "host": host,
            "listen": listen,
            "allow_private": allow_private,
            "transport": transport,
            "security": security,
            "path": path,
            "service_name": service_name,
            "host_header": host_header,
            "xhttp_mode": xhttp_mode,
            "decoy": decoy,
            "subnet": subnet,
            "subnet6": subnet6,
            "dns": dns,
            "mtu": mtu,
            "client_allowed_ips": allowed_ips,
            "runtime": runtime or app_context(ctx).settings.runtime,
            "image": image,
            "docker_host": docker_host,
        },
        output_format,
    )


def rotate_keys(
    ctx: typer.Context, name: ServerName, yes: YesOption = False, output_format: FormatOption = None
) -> None:
    """New keys (REALITY, Shadowsocks 2022, WireGuard, a self-signed certificate). Every user's
    link changes: asks first, and says whose to send again."""
    context = app_context(ctx)
    _confirm_new_links(context, name, yes, "new keys")
    changed = context.servers(lambda s: s.rotate_keys(name))
    show(ctx, changed.server, output_format)
    _links_changed(context.output(), changed)


def set_server(
    ctx: typer.Context,
    name: ServerName,
    port: Annotated[
        int | None,
        typer.Option("--port", metavar="PORT", help="A new port (every user's link changes)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", metavar="ADDRESS", help="A new address for clients' links."),
    ] = None,
    sni: Annotated[
        str | None,
        typer.Option(
            "--sni",
            metavar="SERVER_NAME",
            help="vless-reality: a new target name, its --dest following if it was SNI:443; "
            "TLS protocols: a new name in the certificate (every user's link changes).",
        ),
    ] = None,
    dest: Annotated[
        str | None,
        typer.Option("--dest", metavar="HOST:PORT", help="vless-reality: a new target."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            metavar="CIPHER",
            help=NEW_METHOD_HELP,
        ),
    ] = None,
    cert: Annotated[
        str | None,
        typer.Option("--cert", metavar="FILE", help="TLS protocols: a new certificate of yours."),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="FILE", help="TLS protocols: its private key.")
    ] = None,
    dns: Annotated[
        str | None,
        typer.Option("--dns", metavar="ADDRS", help="wireguard: DNS servers for clients."),
    ] = None,
    mtu: Annotated[
        int | None, typer.Option("--mtu", metavar="N", help="wireguard: the interface MTU.")
    ] = None,
    allowed_ips: Annotated[
        str | None,
        typer.Option(
            "--allowed-ips",
            metavar="CIDRS",
            help="wireguard: what clients route through the tunnel.",
        ),
    ] = None,
    decoy: Annotated[
        str | None,
        typer.Option(
            "--decoy",
            metavar="HOST:PORT",
            help=DECOY_HELP,
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="PATH",
            help="ws, httpupgrade, xhttp: a new HTTP path clients ask for (every user's link "
            "changes).",
        ),
    ] = None,
    service_name: Annotated[
        str | None,
        typer.Option(
            "--service-name",
            metavar="NAME",
            help="grpc: a new gRPC service name (every user's link changes).",
        ),
    ] = None,
    host_header: Annotated[
        str | None,
        typer.Option(
            "--host-header",
            metavar="NAME",
            help="ws, httpupgrade, xhttp: a new Host header clients send (every user's link "
            "changes).",
        ),
    ] = None,
    xhttp_mode: Annotated[
        str | None,
        typer.Option(
            "--xhttp-mode",
            metavar="MODE",
            help="xhttp: auto, packet-up, stream-up or stream-one (every user's link changes).",
        ),
    ] = None,
    allow_private: Annotated[
        bool | None,
        typer.Option(
            "--allow-private/--no-allow-private",
            help="Let users reach private and loopback addresses through the server, or not.",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
    output_format: FormatOption = None,
) -> None:
    """Change what install set: validated, applied with a restart, rolled back on failure; says
    whose links changed. A new port, cipher, SNI or transport value (path, Host header, gRPC
    service name, XHTTP mode) breaks every user's link: asks first."""
    fields = {
        "port": port,
        "host": host,
        "sni": sni,
        "dest": dest,
        "method": method,
        "cert_file": cert,
        "key_file": key,
        "dns": dns,
        "mtu": mtu,
        "client_allowed_ips": allowed_ips,
        "allow_private": allow_private,
        "decoy": decoy,
        "path": path,
        "service_name": service_name,
        "host_header": host_header,
        "xhttp_mode": xhttp_mode,
    }
    change = validated(ServerChange, {k: v for k, v in fields.items() if v is not None})
    if not change.given():
        raise InvalidInput(
            "Nothing to change.", hint="Give one of the options in `vpn server set --help`."
        )
    context = app_context(ctx)
    # Old links stop working with a new port, cipher, SNI or transport value: ask
    # (ServerChange.new_links).
    if what := change.new_links():
        # What would be refused is refused before anyone is asked.
        context.servers(lambda s: s.check_update(name, change))
        _confirm_new_links(context, name, yes, " and ".join(what))
    changed = context.servers(lambda s: s.update(name, change))
    show(ctx, changed.server, output_format)
    _links_changed(context.output(), changed)
    warn(context.output(), context.servers(lambda s: s.advice(name)))


def _confirm_new_links(context: AppContext, name: str, yes: bool, what: str) -> None:
    """Ask before a change that gives every user of the server a new link (none to ask about
    when it has no users)."""
    users = context.servers(lambda s: s.get(name)).users
    if users == 0:
        return
    confirm(
        f"With {what}, the link of every user of {name} ({users}) changes: the old ones stop "
        "working and each user needs the new one. Go ahead?",
        yes=yes,
        refusal=f"Refusing to change every user's link on {name} without confirmation.",
        declined="Nothing was changed.",
    )


def _links_changed(out: Output, changed: ServerChanged) -> None:
    """Whose links changed, on stderr: they need the new ones (`vpn user link`)."""
    names = changed.links_changed
    server = changed.server.name
    if not names:
        out.note(f"No user's link to {server} changed.")
        return
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    out.note(
        f"The link to {server} changed for {len(names)} user{'s' if len(names) != 1 else ''}: "
        f"{shown}. Send them the new one: vpn user link NAME --server {server}"
    )
