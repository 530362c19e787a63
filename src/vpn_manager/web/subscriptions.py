"""The subscription routes of `vpn web`: a user's URL in the format their app reads, their page in
a browser, an Outline dynamic access key per Shadowsocks server and a config per server.

    GET {prefix}/sub/{token}                   the profile (format: ?format= or the User-Agent)
    GET {prefix}/sub/{token}/outline/{server}  Outline's JSON (`ssconf://` points here); 409
                                               with one sentence for a 2022 cipher, which
                                               Outline's apps cannot use
    GET {prefix}/sub/{token}/config/{server}   one server's config file (WireGuard: its .conf)
    GET {prefix}/sub/{token}/wireguard/{server} a WireGuard server's .conf (404 for other kinds)

An unknown token and a malformed one get the same 404, and every failed lookup counts against
the client's address (`ratelimit`): past the limit the address gets 429 until the window
passes. No response says whether a user name exists (the token is the only key). A user who
is disabled, expired or over quota gets their status (the page, or 403 with the usage header)
and never a config.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from vpn_manager.delivery.qr import qr_svg
from vpn_manager.errors import Conflict, InvalidInput, NotFound
from vpn_manager.services.subscriptions import ConfigFile, Subscriber
from vpn_manager.web import page as user_page
from vpn_manager.web.apps import APPS
from vpn_manager.web.formats import FILE_SUFFIXES, MEDIA_TYPES, Format, choose
from vpn_manager.web.ratelimit import FailureLimiter
from vpn_manager.web.urls import subscription_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A token is URL-safe base64; anything else is not looked up at all.
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
UPDATE_HOURS = 12  # how often apps refresh (Profile-Update-Interval)
NOT_FOUND = "Not found.\n"
PROFILE_KINDS = {Format.LINKS: "links", Format.SINGBOX: "sing-box", Format.CLASH: "clash"}


Lookup = Callable[[str], Awaitable[Subscriber | None]]


@dataclass
class WebConfig:
    """How `vpn web` is reached: `public_url` is the address users' apps fetch (scheme, host,
    port and path prefix), else it is taken from each request; `trusted_proxies` are the
    addresses whose X-Forwarded-For/-Proto are believed."""

    prefix: str = ""
    public_url: str | None = None
    trusted_proxies: Sequence[str] = ()
    title: str = "VPN"
    failures: FailureLimiter = field(default_factory=FailureLimiter)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._networks = tuple(
            ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies
        )

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


Endpoint = Callable[[Request], Awaitable[Response]]


def router(lookup: Lookup, config: WebConfig) -> APIRouter:
    # Plain Starlette routes, each reading its token (and server) from the path as it is:
    # FastAPI's parameter machinery took a fifth of the time of a subscription from the cache.
    routes = APIRouter()

    def get(path: str) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            routes.add_route(
                f"{config.prefix}/sub{path}", endpoint, methods=["GET"], include_in_schema=False
            )
            return endpoint

        return add

    async def subscriber(request: Request, token: str) -> Subscriber | Response:
        client = client_address(request, config)
        wait = config.failures.retry_after(client)
        if wait:
            return PlainTextResponse(
                "Too many wrong addresses; try again later.\n",
                status_code=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        found = await lookup(token) if TOKEN.fullmatch(token) else None
        if found is None:
            config.failures.failed(client)
            return PlainTextResponse(NOT_FOUND, status_code=404)
        return found

    @get("/{token}")
    async def profile(request: Request) -> Response:
        token = request.path_params["token"]
        found = await subscriber(request, token)
        if isinstance(found, Response):
            return found
        try:
            fmt = choose(
                request.query_params.get("format"),
                request.headers.get("user-agent", ""),
                request.headers.get("accept", ""),
            )
        except InvalidInput as exc:
            return PlainTextResponse(f"{exc.message}\n", status_code=400)
        url = url_of(request, config, token)
        headers = profile_headers(found, config, url)
        if fmt is Format.PAGE:
            return Response(
                user_page.render(page_of(found, url, config)),
                media_type=MEDIA_TYPES[fmt],
                headers={**headers, "Cache-Control": "no-store"},
            )
        if not found.active or not found.ways:
            return refused(found, headers)
        body = found.profile(PROFILE_KINDS[fmt])
        filename = f"{found.name}{FILE_SUFFIXES[fmt]}"
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def active(request: Request, token: str) -> tuple[Subscriber, dict[str, str]] | Response:
        """The subscriber of `token` and their headers, or the response that refuses them."""
        found = await subscriber(request, token)
        if isinstance(found, Response):
            return found
        headers = profile_headers(found, config, url_of(request, config, token))
        return (found, headers) if found.active else refused(found, headers)

    @get("/{token}/outline/{server}")
    async def outline(request: Request) -> Response:
        token, server = request.path_params["token"], request.path_params["server"]
        got = await active(request, token)
        if isinstance(got, Response):
            return got
        return outline_key(*got, server)

    async def download(request: Request, make: Callable[[Subscriber, str], ConfigFile]) -> Response:
        token, server = request.path_params["token"], request.path_params["server"]
        got = await active(request, token)
        if isinstance(got, Response):
            return got
        found, headers = got
        try:
            file = make(found, server)
        except NotFound:
            return PlainTextResponse(NOT_FOUND, status_code=404)
        filename = f"{found.name}-{server}{file.suffix}"
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
        return Response(file.text, media_type=file.media_type, headers=headers)

    @get("/{token}/config/{server}")
    async def config_file(request: Request) -> Response:
        return await download(request, Subscriber.config_file)

    @get("/{token}/wireguard/{server}")
    async def wireguard(request: Request) -> Response:
        return await download(request, Subscriber.wireguard)

    return routes


def outline_key(found: Subscriber, headers: dict[str, str], server: str) -> Response:
    """Outline's JSON for one of the user's Shadowsocks servers; for a 2022 cipher, which
    Outline's apps cannot use, 409 with the sentence saying so instead of a key that fails."""
    try:
        body = found.outline(server)
    except NotFound:
        return PlainTextResponse(NOT_FOUND, status_code=404)
    except Conflict as exc:
        return PlainTextResponse(f"{exc.message}\n", status_code=409, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def refused(found: Subscriber, headers: dict[str, str]) -> Response:
    status = found.status.replace("-", " ")
    why = f"{found.name} is {status}" if not found.active else f"{found.name} has no server"
    return PlainTextResponse(f"No configs: {why}.\n", status_code=403, headers=headers)


def profile_headers(found: Subscriber, config: WebConfig, url: str) -> dict[str, str]:
    title = f"{config.title}: {found.name}"
    if not found.active:
        title += f" ({found.status.replace('-', ' ')})"
    return {
        "Subscription-Userinfo": found.userinfo(),
        "Profile-Update-Interval": str(UPDATE_HOURS),
        "Profile-Title": "base64:" + base64.b64encode(title.encode()).decode(),
        "Profile-Web-Page-Url": url,
        "Cache-Control": "no-store",
    }


def page_of(found: Subscriber, url: str, config: WebConfig) -> user_page.UserPage:
    servers = []
    if found.active:
        for way, text in found.links():
            servers.append(
                user_page.ServerEntry(
                    name=way.server,
                    protocol=way.protocol,
                    link=text,
                    qr_svg=qr_svg(text, title=f"{found.name} on {way.server}"),
                    download=f"{url}/config/{quote(way.server)}",
                )
            )
    return user_page.UserPage(
        user=found.name,
        status=found.status.replace("-", " "),
        used=found.upload + found.download,
        quota=found.quota,
        expires=found.expires,
        subscription_url=url,
        servers=servers,
        apps=[user_page.AppButton(a.name, a.platforms, a.link(url, found.name)) for a in APPS],
        title=config.title,
    )


def client_address(request: Request, config: WebConfig) -> str:
    """The client's address: the peer's, or the last untrusted one a trusted proxy names."""
    peer = request.client.host if request.client else ""
    if not config.trusts(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not config.trusts(hop):
            return hop
    return hops[0] if hops else peer


def url_of(request: Request, config: WebConfig, token: str) -> str:
    """The subscription URL of `token` as its app reaches it: `public_url`, else the address the
    request came to (its scheme as a trusted proxy says)."""
    if config.public_url:
        return subscription_url(config.public_url.rstrip("/"), token)
    scheme = str(request.scope.get("scheme", "http"))  # request.url, without building it all
    peer = request.client.host if request.client else ""
    if config.trusts(peer):
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
    host = request.headers.get("host") or request.url.netloc
    return subscription_url(f"{scheme}://{host}{config.prefix}", token)
