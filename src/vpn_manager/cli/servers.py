"""`vpn server …`: install, run, inspect, change and remove VPN servers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vpn_manager.cli.output import Output
    from vpn_manager.models.server import Server, ServerStatus
    from vpn_manager.services.servers import ServerService

app = typer.Typer(help="Install, run and remove VPN servers.", no_args_is_help=True)


def _complete_servers(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        servers = app_context(ctx).servers(lambda s: s.all())
    except Exception:  # completion must never print errors into the user's prompt
        return []
    return [s.name for s in servers if s.name.startswith(incomplete)]


ServerName = Annotated[
    str,
    typer.Argument(metavar="SERVER", help="The server's name.", autocompletion=_complete_servers),
]
COLUMNS = [
    ("name", "NAME"),
    ("protocol", "PROTOCOL"),
    ("address", "ADDRESS"),
    ("state", "STATE"),
    ("users", "USERS"),
    ("sni", "SNI/METHOD"),
]


def _row(server: Server) -> dict[str, Any]:
    return server.model_dump(mode="json")


def _cells(server: Server) -> dict[str, Any]:
    return {
        "name": server.name,
        "protocol": server.protocol.value,
        "address": f"{server.host}:{server.port}",
        "state": ("running" if server.running else "stopped")
        + (
            ""
            if server.running == (server.desired.value == "running")
            else f" (wanted {server.desired.value})"
        ),
        "users": str(server.users),
        "sni": server.settings.get("sni") or server.settings.get("method") or "-",
    }


def _show(ctx: typer.Context, server: Server, fmt: FormatOption) -> None:
    out = app_context(ctx).output(fmt)
    if out.structured:
        out.data(_row(server))
        return
    flat = {key: value for key, value in _row(server).items() if key != "settings"}
    flat.update({key: value for key, value in server.settings.items() if key != "api_port"})
    out.record(flat)


Listen = Annotated[
    str, typer.Option("--listen", metavar="ADDR", help="The local address to listen on.")
]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", metavar="ADDRESS", help="The address clients use (default: this machine's)."
    ),
]
AllowPrivate = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="Let users reach private and loopback addresses through the server.",
    ),
]


def install_fields(ctx: typer.Context, fields: dict[str, Any], fmt: FormatOption) -> None:
    from vpn_manager.models import validated
    from vpn_manager.models.server import ServerCreate

    create = validated(ServerCreate, {k: v for k, v in fields.items() if v is not None})
    context = app_context(ctx)
    server = context.servers(lambda s: s.install(create))
    _show(ctx, server, fmt)
    context.output().note(
        f"{server.name} is running on port {server.port}. "
        f"Add a user: vpn user add NAME --server {server.name}"
    )
    _warn(context.output(), context.servers(lambda s: s.warnings(server.name)))


def _warn(out: Output, warnings: list[str]) -> None:
    """Warnings go to stderr, whatever the format (json output carries them in its data too)."""
    for warning in warnings:
        out.note(f"Warning: {warning}")


@app.command("install")
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


@app.command("list")
def list_servers(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """List servers."""
    context = app_context(ctx)

    async def read(s: ServerService) -> tuple[list[Server], list[str]]:
        return await s.all(), await s.reconcile()

    servers, hints = context.servers(read)
    out = context.output(output_format)
    emit_servers(
        out, servers, "No servers yet. Install one with `vpn server install vless-reality …`."
    )
    for hint in hints:
        out.note(hint)


def emit_servers(out: Output, servers: list[Server], empty: str) -> None:
    if out.structured:
        out.data([_row(s) for s in servers])
    else:
        out.records([_cells(s) for s in servers], COLUMNS, empty=empty)


def _status_data(status: ServerStatus) -> dict[str, Any]:
    return status.model_dump(mode="json")


@app.command("status")
def status(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Show whether a server runs, answers on its port and API, and what it uses."""
    from vpn_manager.units import format_size

    context = app_context(ctx)
    state = context.servers(lambda s: s.status(name))
    out = context.output(output_format)
    data = _status_data(state)
    if not out.structured:
        data["rss_bytes"] = format_size(state.rss_bytes) if state.rss_bytes else "-"
        data.pop("container")
        data.pop("warnings")
        if state.container is not None:
            data.update(_container_cells(state))
    out.record(data)
    _warn(out, state.warnings)


def _container_cells(state: ServerStatus) -> dict[str, Any]:
    """A container's state, health and use, flattened for a table."""
    from vpn_manager.units import format_size

    box = state.container
    assert box is not None

    def size(value: int | None) -> str:
        return format_size(value) if value is not None else "-"

    memory = size(box.memory_bytes)
    if box.memory_limit_bytes:
        memory += f" of {size(box.memory_limit_bytes)}"
    return {
        "container": f"{box.name} ({box.id})",
        "image": box.image,
        "container_state": box.state,
        "health": box.health,
        "restarts": box.restarts,
        "cpu": "-" if box.cpu_percent is None else f"{box.cpu_percent:.1f}%",
        "memory": memory,
        "network": f"rx {size(box.net_rx_bytes)}, tx {size(box.net_tx_bytes)}",
    }


@app.command("start")
def start(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Start a server (and keep it wanted running)."""
    context = app_context(ctx)
    state = context.servers(lambda s: s.start(name))
    context.output(output_format).result(
        _status_data(state), f"{name} is running (pid {state.pid})."
    )
    _warn(context.output(output_format), state.warnings)


@app.command("stop")
def stop(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Stop a server (it stays stopped until started)."""
    context = app_context(ctx)
    was = context.servers(lambda s: s.stop(name))
    context.output(output_format).result(
        {"name": name, "stopped": was}, f"Stopped {name}." if was else f"{name} was not running."
    )


@app.command("restart")
def restart(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Restart a server: validate its config, restart, probe; roll back if it fails."""
    context = app_context(ctx)
    state = context.servers(lambda s: s.restart(name))
    context.output(output_format).result(
        _status_data(state), f"Restarted {name} (pid {state.pid})."
    )
    _warn(context.output(output_format), state.warnings)


@app.command("usage")
def usage(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Per-user traffic as the running engine counts it now (since it started)."""
    from vpn_manager.units import format_size

    context = app_context(ctx)
    counters = context.servers(lambda s: s.usage(name))
    out = context.output(output_format)
    rows: list[dict[str, Any]] = [
        {"name": user, "upload_bytes": up, "download_bytes": down}
        for user, (up, down) in sorted(counters.items())
    ]
    if out.structured:
        out.data(rows)
        return
    out.records(
        [
            {
                "name": user,
                "up": format_size(up),
                "down": format_size(down),
            }
            for user, (up, down) in sorted(counters.items())
        ],
        [("name", "USER"), ("up", "UPLOAD"), ("down", "DOWNLOAD")],
        empty="No traffic counted yet.",
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: ServerName,
    lines: Annotated[int, typer.Option("--lines", "-n", metavar="N", help="How many lines.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
) -> None:
    """Print the end of a server's engine logs (its container's output under Docker)."""
    from vpn_manager.errors import InvalidInput

    if lines < 0:
        raise InvalidInput("--lines cannot be negative.")
    context = app_context(ctx)
    if not follow:
        for line in context.servers(lambda s: s.read_logs(name, lines)):
            sys.stdout.write(line + "\n")
        return
    stream: Iterator[str] = context.servers(lambda s: s.follow(name, lines))
    for line in stream:  # Ctrl-C ends it with exit code 130 (cli/app.py)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: ServerName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output_format: FormatOption = None,
) -> None:
    """Stop a server and remove it with its rendered config and its users' credentials on it."""
    from vpn_manager.errors import Cancelled, InvalidInput

    context = app_context(ctx)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "Refusing to remove a server without confirmation.", hint="Add --yes."
            )
        if not typer.confirm(f"Remove server {name}? Its users lose access through it."):
            raise Cancelled("Nothing was removed.")
    context.servers(lambda s: s.remove(name))
    context.output(output_format).result({"removed": name}, f"Removed {name}.")


@app.command("rotate-keys")
def rotate_keys(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """New REALITY keys and short ids. Every user's link changes: send them the new ones."""
    context = app_context(ctx)
    server = context.servers(lambda s: s.rotate_keys(name))
    _show(ctx, server, output_format)
    context.output().note(
        f"New keys for {name}: every user's link changed. Show them with `vpn user link NAME`."
    )


@app.command("set")
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
    from vpn_manager.errors import InvalidInput

    if port is None and sni is None and dest is None and host is None:
        raise InvalidInput("Nothing to change.", hint="Give --port, --sni, --dest or --host.")
    context = app_context(ctx)
    server = context.servers(lambda s: s.update(name, port=port, sni=sni, dest=dest, host=host))
    _show(ctx, server, output_format)


@app.command("export-compose")
def export_compose(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Option("--file", metavar="PATH", help="Where to write it ('-': standard output)."),
    ] = "docker-compose.yml",
) -> None:
    """Write a docker-compose.yml that runs this home's Docker servers the same way."""
    from pathlib import Path

    from vpn_manager.fsutil import atomic_write

    context = app_context(ctx)
    text = context.servers(lambda s: s.export_compose())
    if file == "-":
        sys.stdout.write(text)
        return
    atomic_write(Path(file), text, mode=0o644)
    context.output().note(f"Wrote {file}. Check it with `docker-compose -f {file} config`.")
