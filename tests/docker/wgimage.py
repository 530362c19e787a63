"""A WireGuard image built here, since no registry is reachable: `FROM scratch` plus this
machine's wireguard-go, wg, ip and nft (installed by scripts/setup) with the shared libraries
`ldd` lists for them and the dynamic loader, at the same paths as on this machine. `ip` is
iproute2's, or BusyBox's (what Alpine-based images such as the default one have)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from docker import DockerClient

TOOLS = {
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "ip": "iproute2",
    "nft": "nftables",
    "ldd": "libc-bin",
}
BUSYBOX = "busybox"
_LIBRARY = re.compile(r"(/\S+)")


def tool_paths(busybox_ip: bool = False) -> dict[str, Path]:
    """Where the image's tools are on this machine (with `busybox_ip`, BusyBox's binary as
    `ip`); a missing one fails the test, naming its Debian package."""
    packages = TOOLS | ({BUSYBOX: BUSYBOX} if busybox_ip else {})
    found = {tool: shutil.which(tool) for tool in packages}
    if busybox_ip:
        found["ip"] = found.pop(BUSYBOX)
        packages["ip"] = BUSYBOX
    missing = [
        f"{tool} (Debian package {packages[tool]})" for tool, path in found.items() if not path
    ]
    if missing:
        pytest.fail(
            "The WireGuard Docker test image is built from this machine's tools, and these are "
            "missing: " + ", ".join(missing) + ". Run scripts/setup.",
            pytrace=False,
        )
    return {tool: Path(path).resolve() for tool, path in found.items() if path and tool != "ldd"}


def libraries(binary: Path) -> set[Path]:
    """The shared libraries (and the loader) a dynamically linked binary needs, from `ldd`."""
    listed = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False
    ).stdout
    if "not a dynamic executable" in listed or "statically linked" in listed:
        return set()
    found = set()
    for line in listed.splitlines():
        match = _LIBRARY.search(line.split("=>")[-1])
        if match:
            found.add(Path(match.group(1)))
    return found


def build_context(busybox_ip: bool = False) -> bytes:
    """A tar build context: the Dockerfile, the tools in /usr/bin and their libraries (BusyBox
    runs as the applet its file is named after: /usr/bin/ip)."""
    files: dict[str, tuple[bytes, int]] = {
        "Dockerfile": (b"FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/bin\n", 0o644)
    }
    for tool, path in tool_paths(busybox_ip).items():
        files[f"rootfs/usr/bin/{tool}"] = (path.read_bytes(), 0o755)
        for library in libraries(path):
            # At the path the binary asks for (the loader's own path is in the ELF header).
            files[f"rootfs{library}"] = (library.resolve().read_bytes(), 0o755)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        directories: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return context.getvalue()


def build(client: DockerClient, label: str, busybox_ip: bool = False) -> str:
    """Build the image; return its tag (vpn-manager-test/wireguard:RANDOM)."""
    build_id = uuid.uuid4().hex[:10]
    tag = f"vpn-manager-test/wireguard:{'busybox-' if busybox_ip else ''}{build_id}"
    client.images.build(
        fileobj=io.BytesIO(build_context(busybox_ip)),
        custom_context=True,
        tag=tag,
        # The build's own label makes the image id its own: an identical build elsewhere (the
        # other test worker) removed with force cannot take this one with it.
        labels={label: "1", f"{label}.build": build_id},
        rm=True,
    )
    return tag
