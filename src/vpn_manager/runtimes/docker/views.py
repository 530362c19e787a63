"""What Docker says about a container, in our terms: its state for the runtime contract, and its
summary and resource use for `vpn server status`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vpn_manager.runtimes.base import ProcessState
from vpn_manager.runtimes.docker.options import LABEL_LAUNCH, network_name

if TYPE_CHECKING:
    from docker.models.containers import Container


def state_of(container: Container, home: str) -> ProcessState:
    """A container's state as the runtime contract has it: running, pid, start, health, restarts,
    the launch it was made for, whether it is on this home's network, its published ports."""
    state = container.attrs.get("State", {})
    running = state.get("Status") == "running"
    health = (state.get("Health") or {}).get("Status") or "no healthcheck"
    networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    endpoint = (networks.get(network_name(home)) or {}).get("EndpointID")
    published = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
    bindings = {
        key: int(found[0].get("HostPort") or 0) for key, found in published.items() if found
    }
    return ProcessState(
        running=running,
        pid=state.get("Pid") or None if running else None,
        started_at=timestamp(state.get("StartedAt")) if running else None,
        exit_detail="" if running else f"container {state.get('Status', 'unknown')}",
        health=health,
        instance=container.id or "",
        restarts=int(container.attrs.get("RestartCount") or 0),
        launch=container.labels.get(LABEL_LAUNCH, ""),
        networked=bool(endpoint) or not running,
        bindings=bindings,
    )


def summary(container: Container, with_stats: bool = True) -> dict[str, Any]:
    """The container's name, id, image, state, health, restarts and (one sample of) CPU, memory
    and network use."""
    state = container.attrs.get("State", {})
    info: dict[str, Any] = {
        "name": container.name,
        "id": container.short_id,
        "image": container.attrs.get("Config", {}).get("Image", ""),
        "state": state.get("Status", "unknown"),
        "health": (state.get("Health") or {}).get("Status") or "no healthcheck",
        "restarts": int(container.attrs.get("RestartCount") or 0),
    }
    if with_stats and info["state"] == "running":
        sample = container.stats(stream=False)  # waits for a second sample: CPU needs two
        if isinstance(sample, dict):
            info.update(usage(sample))
    return info


def timestamp(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    if not value or value.startswith("0001-"):
        return None
    head, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        return datetime.fromisoformat(f"{head}.{fraction or '0'}").replace(tzinfo=UTC)
    except ValueError:
        return None


def usage(stats: dict[str, Any]) -> dict[str, Any]:
    """CPU percent (of one core = 100), memory without page cache, bytes through the network."""
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    percent = cpu_delta / system_delta * cores * 100 if system_delta > 0 and cpu_delta >= 0 else 0.0
    memory = stats.get("memory_stats", {})
    cache = memory.get("stats", {}).get("inactive_file", memory.get("stats", {}).get("cache", 0))
    networks = stats.get("networks") or {}
    return {
        "cpu_percent": round(percent, 2),
        "memory_bytes": max(0, int(memory.get("usage", 0)) - int(cache or 0)) or None,
        "memory_limit_bytes": memory.get("limit"),
        "net_rx_bytes": sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        "net_tx_bytes": sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
    }
