"""The WireGuard engine: one wireguard-go process per server (this kernel has no WireGuard
module; wireguard-go is the userspace implementation), configured with `wg` and `ip`.

The process is the interface: wireguard-go creates it on start and it disappears when the process
ends, so the native runtime's supervision covers it. After start we give it its addresses, MTU and
peers, enable forwarding and add NAT/forward rules in an nftables table of its own; on stop the
table is deleted. Peers change live with `wg set` (no restart, other peers untouched, a removed
peer is cut at once: WireGuard has no session beyond the peer entry).

Where the server runs is one seam: the engine is given `commands` (proc.Commands), which run
`ip`, `wg` and `nft` on this machine for a native server and inside the server's container for a
Docker one (wireguard-go is then the container's main process, and the interface, its addresses,
forwarding and NAT all live in the container's network namespace)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpn_manager.engines.base import Changed, Counter, Files, Health, Transport
from vpn_manager.engines.changes import refuse_others
from vpn_manager.engines.linkdata import LinkData
from vpn_manager.engines.wireguard import config, keys
from vpn_manager.engines.wireguard.settings import Peer, WireGuardSecret, WireGuardSettings
from vpn_manager.errors import EngineError, EngineMissing, InvalidInput
from vpn_manager.kinds import RuntimeKind
from vpn_manager.proc import HOST, Commands
from vpn_manager.specs import Client, ServerSpec

# A new server's subnet and DNS unless it is given others (the rest: WireGuardSettings').
DEFAULT_SUBNET = "10.13.13.0/24"
DEFAULT_DNS = "1.1.1.1"
PRIVATE_V4 = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 127.0.0.0/8"
CAP_NET_ADMIN = 12

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerChange, ServerCreate


def require_net_admin() -> None:
    """WireGuard interfaces, addresses and rules need root or CAP_NET_ADMIN."""
    if os.geteuid() == 0:
        return
    try:
        status = Path("/proc/self/status").read_text()
        effective = int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16
        )
    except (OSError, StopIteration, ValueError):
        effective = 0
    if not effective & (1 << CAP_NET_ADMIN):
        raise EngineError(
            "WireGuard servers need root or CAP_NET_ADMIN (to create the interface and its rules).",
            hint="Run vpn as root, or grant it: setcap cap_net_admin+ep on the Python binary.",
        )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineMissing(
            f"{name} is not installed.",
            hint="Install it: apt-get install -y --no-install-recommends "
            "wireguard-tools wireguard-go nftables",
        )
    return path


class WireGuardEngine:
    name = "wireguard-go"

    def __init__(self, commands: Commands = HOST) -> None:
        self.run = commands

    def tool(self, name: str) -> str:
        """A helper's path on this machine (checked), or its name on the container's PATH."""
        return _tool(name) if self.run.local else name

    def new_server(
        self, create: ServerCreate, ports: Callable[[], int], keys_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if create.runtime is not RuntimeKind.DOCKER:  # a container has its own tools and caps
            require_net_admin()
            for tool in ("wireguard-go", "wg", "ip", "nft"):
                _tool(tool)
        private, public = keys.key_pair()
        defaults = WireGuardSettings  # its fields' defaults are a new server's
        settings = WireGuardSettings(
            # Interface names are at most 15 characters: a short random one, kept.
            interface=f"wg{secrets.token_hex(3)}",
            subnet=create.subnet or DEFAULT_SUBNET,
            subnet6=create.subnet6,
            dns=create.dns or DEFAULT_DNS,
            mtu=create.mtu or defaults.mtu,
            client_allowed_ips=create.client_allowed_ips or defaults.client_allowed_ips,
            keepalive=defaults.keepalive,
            public_key=public,
            allow_private=create.allow_private,
        )
        return settings.to_dict(), WireGuardSecret(private_key=private).to_dict()

    def rotate_keys(self, spec: ServerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        private, public = keys.key_pair()
        settings = dataclasses.replace(WireGuardSettings.of(spec), public_key=public)
        secret = dataclasses.replace(WireGuardSecret.of(spec), private_key=private)
        return settings.to_dict(), secret.to_dict()

    def change(self, spec: ServerSpec, change: ServerChange, keys_dir: Path) -> Changed:
        """What the clients' `.conf` says (--dns, --mtu, --allowed-ips; the MTU is the
        interface's too) and --allow-private. The subnets stay: peers' addresses are in them."""
        refuse_others(change, spec.protocol, ("dns", "mtu", "client_allowed_ips"))
        values: dict[str, Any] = {
            "dns": change.dns,
            "mtu": change.mtu,
            "client_allowed_ips": change.client_allowed_ips,
            "allow_private": change.allow_private,
        }
        updates = {key: value for key, value in values.items() if value is not None}
        settings = dataclasses.replace(WireGuardSettings.of(spec), **updates)
        return Changed(settings.to_dict(), dict(spec.secret))

    def advice(self, spec: ServerSpec) -> list[str]:
        return []

    def new_credential(
        self,
        spec: ServerSpec,
        password: str | None = None,
        taken: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        if password is not None:
            raise InvalidInput("WireGuard peers get generated keys; --password does not apply.")
        private, public = keys.key_pair()
        peer = {"private_key": private, "public_key": public, "preshared_key": keys.preshared_key()}
        return Peer.of_dict(
            peer | config.next_addresses(WireGuardSettings.of(spec), taken)
        ).to_dict()

    def control_ports(self, spec: ServerSpec) -> list[int]:
        return []  # `wg` talks to wireguard-go's UAPI unix socket in /var/run/wireguard: no TCP

    def transports(self, spec: ServerSpec) -> tuple[Transport, ...]:
        return ("udp",)

    def live_users(self, spec: ServerSpec) -> bool:
        return True  # `wg set`

    def cuts_sessions(self, spec: ServerSpec) -> bool:
        return True  # a removed peer has no session left

    def render(self, spec: ServerSpec, clients: list[Client], files: Files) -> str:
        return config.render(spec, clients)

    def before_start(self, spec: ServerSpec, clients: list[Client], files: Files) -> None:
        return  # the config is all it reads

    def argv(self, spec: ServerSpec, config_file: Path) -> list[str]:
        return [_tool("wireguard-go"), "-f", WireGuardSettings.of(spec).interface]

    async def validate(self, text: str, scratch: Path) -> None:
        """Our own check of the `wg setconf` text (wg has no dry run): sections, keys that decode
        to 32 bytes, addresses that parse. `wg setconf` itself is the final word after start."""
        section = ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line in ("[Interface]", "[Peer]"):
                section = line
                continue
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not section:
                raise EngineError(f"WireGuard config line {number} is malformed.")
            try:
                if key in ("PrivateKey", "PublicKey", "PresharedKey"):
                    keys.public_key(value) if key == "PrivateKey" else _key32(value)
                elif key == "AllowedIPs":
                    for part in value.split(","):
                        ipaddress.ip_network(part.strip())
                elif key == "ListenPort" and not 1 <= int(value) <= 65535:
                    raise ValueError("port out of range")
            except ValueError as exc:
                raise EngineError(
                    f"WireGuard config line {number} ({key}) is invalid: {exc}."
                ) from None

    async def probe(self, spec: ServerSpec) -> Health:
        interface = WireGuardSettings.of(spec).interface
        link = await self.run([self.tool("ip"), "link", "show", "dev", interface], check=False)
        if link.returncode != 0:
            return Health(False, False, f"interface {interface} does not exist")
        shown = await self.run([self.tool("wg"), "show", interface, "listen-port"], check=False)
        answering = shown.returncode == 0
        listening = answering and shown.stdout.strip() == str(spec.port)
        detail = (
            "healthy"
            if listening
            else (
                f"interface {interface} up, not yet listening on {spec.port}"
                if answering
                else f"wg cannot read {interface}: {shown.stderr.strip()}"
            )
        )
        # Before its config is set the interface exists but listens nowhere: that is "started";
        # after_start gives it the port.
        return Health(True, answering, detail)

    def own_log_line(self, line: str) -> bool:
        return False  # its control API calls are not logged

    async def after_start(self, spec: ServerSpec, clients: list[Client]) -> None:
        settings = WireGuardSettings.of(spec)
        interface = settings.interface
        ip = self.tool("ip")
        for network in settings.networks():
            address = f"{config.server_address(network)}/{network.prefixlen}"
            await self.run([ip, "address", "replace", address, "dev", interface])
        await self.run([ip, "link", "set", "dev", interface, "mtu", str(settings.mtu), "up"])
        await self.run(
            [self.tool("wg"), "setconf", interface, "/dev/stdin"],
            input=config.render(spec, clients),
        )
        # A container gets forwarding from its sysctls (runtimes/docker/images.py).
        if self.run.local:
            _forwarding(settings)
        await self.run([self.tool("nft"), "-f", "-"], input=_rules(spec))

    async def after_stop(self, spec: ServerSpec) -> None:
        if not self.run.local:
            return  # the table went with the container's network namespace
        await self.run([_tool("nft"), "delete", "table", "inet", _table(spec)], check=False)

    async def reload(self, spec: ServerSpec, pid: int) -> None:
        raise EngineError("WireGuard peers change live; it is never reloaded.")  # pragma: no cover

    async def users(self, spec: ServerSpec) -> set[str]:
        """The interface's peers, by public key."""
        done = await self.run([self.tool("wg"), "show", _interface(spec), "peers"])
        return {line.strip() for line in done.stdout.splitlines() if line.strip()}

    async def add_clients(self, spec: ServerSpec, clients: list[Client]) -> None:
        """`wg addconf` with just the new peers (keys on stdin): one call however many, and the
        peers already there are not touched."""
        peers = config.render(spec, clients).split("\n\n", 1)
        if len(peers) == 2:
            await self.run(
                [self.tool("wg"), "addconf", _interface(spec), "/dev/stdin"],
                input="[Interface]\n\n" + peers[1],
            )

    async def remove_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        interface = _interface(spec)
        for client in clients:
            public_key = Peer.of(client).public_key
            await self.run([self.tool("wg"), "set", interface, "peer", public_key, "remove"])
        return len(clients)

    async def cut_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        return 0  # a peer removed has no tunnel left: its key no longer decrypts anything

    async def counters(self, spec: ServerSpec) -> list[Counter]:
        """Per peer from `wg show dump`: rx (what the peer sent: its upload) and tx (its download).
        A peer removed and added again starts from zero."""
        done = await self.run([self.tool("wg"), "show", _interface(spec), "dump"])
        found = []
        for line in done.stdout.splitlines()[1:]:  # the first line is the interface
            fields = line.split("\t")
            if len(fields) >= 7:
                found.append(Counter(fields[0], fields[0], int(fields[5]), int(fields[6])))
        return found

    def follower(self, spec: ServerSpec) -> None:
        """Per-user counters since start: a poll misses nothing, there is nothing to follow."""
        return

    async def sessions(self, spec: ServerSpec) -> None:
        """None: a peer's key has one endpoint at a time (the last one it spoke from), so
        WireGuard cannot show one user on several devices; a device limit does not apply."""

    async def cut_ips(self, spec: ServerSpec, user: str, ips: set[str], files: Files) -> int:
        return 0  # never asked: sessions() reports nothing to cut

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        return config.link_data(spec, client)


def _key32(value: str) -> None:
    if len(base64.b64decode(value, validate=True)) != 32:
        raise ValueError("a key is 32 bytes")


def _interface(spec: ServerSpec) -> str:
    return WireGuardSettings.of(spec).interface


def _table(spec: ServerSpec) -> str:
    return f"vpnmanager_{_interface(spec)}"


def _rules(spec: ServerSpec) -> str:
    """The server's own nftables table: forward its peers' traffic (not to private networks
    unless allowed) and masquerade it on the way out."""
    settings = WireGuardSettings.of(spec)
    interface = settings.interface
    subnets = settings.networks()
    v4 = [str(n) for n in subnets if n.version == 4]
    v6 = [str(n) for n in subnets if n.version == 6]
    block = (
        ""
        if settings.allow_private
        else (f'        iifname "{interface}" ip daddr {{ {PRIVATE_V4} }} drop\n')
    )
    masquerade = "".join(
        f'        ip saddr {net} oifname != "{interface}" masquerade\n' for net in v4
    ) + "".join(f'        ip6 saddr {net} oifname != "{interface}" masquerade\n' for net in v6)
    return (
        f"table inet {_table(spec)} {{}}\n"
        f"delete table inet {_table(spec)}\n"
        f"table inet {_table(spec)} {{\n"
        "    chain forward {\n"
        "        type filter hook forward priority 0; policy accept;\n"
        f'        oifname "{interface}" ct state established,related accept\n'
        f"{block}"
        f'        iifname "{interface}" accept\n'
        "    }\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority 100; policy accept;\n"
        f"{masquerade}"
        "    }\n"
        "}\n"
    )


def _forwarding(settings: WireGuardSettings) -> None:
    """Let the kernel route between the tunnel and the world."""
    paths = [Path("/proc/sys/net/ipv4/ip_forward")]
    if settings.subnet6:
        paths.append(Path("/proc/sys/net/ipv6/conf/all/forwarding"))
    for path in paths:
        try:
            path.write_text("1\n")
        except OSError as exc:
            raise EngineError(f"Cannot enable forwarding ({path}): {exc.strerror}.") from None
