"""`vpn server install|rotate-keys|set`: install a server, and change its keys or settings (the
proxies' `vpn proxy add` installs through `install_fields` too)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.cli.servers.args import AllowPrivate, HostOpt, Listen, ServerName
from vpn_manager.cli.servers.display import show, warn
from vpn_manager.errors import InvalidInput
from vpn_manager.models import validated
from vpn_manager.models.server import ServerCreate


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
            help="vless-reality, shadowsocks, trojan, hysteria2, tuic, vmess or wireguard "
            "(proxies: `vpn proxy add`).",
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
            help="vless-reality: the real site clients pretend to visit (e.g. www.microsoft.com); "
            "TLS protocols: the name in the certificate (default: --host).",
        ),
    ] = None,
    dest: Annotated[
        str | None,
        typer.Option(
            "--dest",
            metavar="HOST:PORT",
            help="vless-reality: where probes and non-clients are forwarded (default: SNI:443).",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            metavar="CIPHER",
            help="shadowsocks: 2022-blake3-aes-128-gcm (default), 2022-blake3-aes-256-gcm, "
            "2022-blake3-chacha20-poly1305, aes-256-gcm, chacha20-ietf-poly1305.",
        ),
    ] = None,
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
            "password": password,
            "cert_file": cert,
            "key_file": key,
            "host": host,
            "listen": listen,
            "allow_private": allow_private,
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


def rotate_keys(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """New REALITY keys and short ids. Every user's link changes: send them the new ones."""
    context = app_context(ctx)
    server = context.servers(lambda s: s.rotate_keys(name))
    show(ctx, server, output_format)
    context.output().note(
        f"New keys for {name}: every user's link changed. Show them with `vpn user link NAME`."
    )


def set_server(
    ctx: typer.Context,
    name: ServerName,
    port: Annotated[int | None, typer.Option("--port", metavar="PORT", help="A new port.")] = None,
    sni: Annotated[
        str | None, typer.Option("--sni", metavar="SERVER_NAME", help="A new SNI.")
    ] = None,
    dest: Annotated[
        str | None, typer.Option("--dest", metavar="HOST:PORT", help="A new target.")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="ADDRESS", help="A new client address.")
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Change a server's settings: validated, applied with a restart, rolled back on failure."""
    if port is None and sni is None and dest is None and host is None:
        raise InvalidInput("Nothing to change.", hint="Give --port, --sni, --dest or --host.")
    context = app_context(ctx)
    server = context.servers(lambda s: s.update(name, port=port, sni=sni, dest=dest, host=host))
    show(ctx, server, output_format)
