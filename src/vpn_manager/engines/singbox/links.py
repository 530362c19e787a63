"""The share link for a user on a sing-box server, built from what we stored at install."""

from __future__ import annotations

from vpn_manager.engines.base import Client, ServerSpec
from vpn_manager.engines.singbox.secrets import is_2022


def link_for(spec: ServerSpec, client: Client) -> str:
    from vpn_manager.delivery import share

    secret, settings, protocol = client.secret, spec.settings, spec.protocol
    host, port = spec.host, spec.port
    if protocol == "shadowsocks":
        method = settings["method"]
        # A multi-user 2022 server takes SERVER_PSK:USER_PSK from each client (SIP022).
        password = (
            f"{spec.secret['psk']}:{secret['password']}" if is_2022(method) else secret["password"]
        )
        return share.ShadowsocksLink(
            method=method, password=password, host=host, port=port, name=client.name
        ).to_uri()
    if protocol in ("http", "socks5", "mixed"):
        return share.ProxyLink(
            scheme="socks5" if protocol == "socks5" else "http",
            username=client.name,
            password=secret["password"],
            host=host,
            port=port,
            name=client.name,
        ).to_uri()
    tls = settings["tls"]
    # A self-signed certificate cannot be checked against a CA: Hysteria 2 links pin it by its
    # SHA-256; the Trojan, TUIC and VMess link formats have no pin, so they carry the insecure flag.
    insecure = bool(tls.get("self_signed"))
    sni = tls["server_name"]
    if protocol == "trojan":
        link: share.AnyLink = share.TrojanLink(
            password=secret["password"],
            host=host,
            port=port,
            sni=sni,
            insecure=insecure,
            name=client.name,
        )
    elif protocol == "hysteria2":
        link = share.Hysteria2Link(
            password=secret["password"],
            host=host,
            port=port,
            sni=sni,
            insecure=insecure,
            pin_sha256=tls["cert_sha256"] if insecure else None,
            name=client.name,
        )
    elif protocol == "tuic":
        link = share.TuicLink(
            uuid=secret["uuid"],
            password=secret["password"],
            host=host,
            port=port,
            sni=sni,
            insecure=insecure,
            name=client.name,
        )
    else:
        link = share.VmessLink(
            uuid=secret["uuid"],
            host=host,
            port=port,
            sni=sni,
            tls=True,
            insecure=insecure,
            name=client.name,
        )
    return link.to_uri()
