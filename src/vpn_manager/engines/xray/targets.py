"""Advice on a REALITY server's target (the site it claims to be) and port.

A REALITY server answers as its target does, so to a censor it looks like that site served from
this server's address. A household name is a poor disguise: which addresses really serve
www.microsoft.com or www.apple.com is well known, and a VPS claiming to be one of them stands out
(Xray itself logs "REALITY: Choosing apple, icloud, etc. as the target may get your IP blocked
by the GFW"). Real HTTPS sites answer on 443, so another port stands out too (Xray: "Listening
on non-443 ports may get your IP blocked by the GFW"). A good target speaks TLS 1.3 with X25519
and h2, does not redirect, and is hosted near the server (XTLS/Xray-examples, REALITY).

The list below is short on purpose: the names most guides copy, which censors watch first. It
cannot know every popular site; it warns, it never refuses (a loopback or private target, as a
test bed uses, is fine).
"""

from __future__ import annotations

# Sites everyone knows (and the ones REALITY guides copy), by their registered domain.
HOUSEHOLD_NAMES = frozenset(
    {
        "amazon.com",
        "apple.com",
        "bing.com",
        "cloudflare.com",
        "discord.com",
        "facebook.com",
        "github.com",
        "google.com",
        "icloud.com",
        "instagram.com",
        "live.com",
        "microsoft.com",
        "netflix.com",
        "nvidia.com",
        "office.com",
        "samsung.com",
        "speedtest.net",
        "twitter.com",
        "whatsapp.com",
        "yahoo.com",
        "youtube.com",
    }
)
# What Xray's own check looks for anywhere in the name.
XRAY_WARNS_OF = ("apple", "icloud")
REALITY_PORT = 443


def household_name(name: str) -> bool:
    """Is `name` (an SNI or a target host) one of the sites everyone knows?"""
    name = name.lower().rstrip(".")
    if any(word in name for word in XRAY_WARNS_OF):
        return True
    parts = name.split(".")
    return any(".".join(parts[i:]) in HOUSEHOLD_NAMES for i in range(len(parts) - 1))


def advice(server: str, sni: str, dest: str, port: int) -> list[str]:
    """What makes this REALITY server easier to block, each with the command that fixes it."""
    found = []
    target = dest.rpartition(":")[0].strip("[]")  # stored as HOST:PORT or [IPv6]:PORT
    popular = next((name for name in (sni, target) if household_name(name)), None)
    if popular is not None:
        found.append(
            f"The REALITY target {popular} is a household name: which addresses really serve "
            "it is well known, so a server elsewhere claiming to be it is easier to block (Xray "
            "warns of this too). Pick a less known site that speaks TLS 1.3 with X25519 and h2, "
            f"hosted near this server: `vpn server set {server} --sni SITE --dest SITE:443`."
        )
    if port != REALITY_PORT:
        found.append(
            f"Port {port}: real HTTPS sites answer on 443, so REALITY on another port is easier "
            f"to spot and block (Xray warns of this too): `vpn server set {server} --port 443`."
        )
    return found
