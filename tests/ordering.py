"""The slowest tests start first, so that the two xdist workers share them from the start
instead of one worker finishing a long test alone while the other waits at the end."""

from __future__ import annotations

import pytest

# Node-id prefixes, longest first (`pytest --durations=30` tells when this list is stale).
SLOWEST = (
    "tests/e2e/test_reliability.py::test_a_hung_engine_is_restarted",
    "tests/docker/test_docker_runtime.py::test_a_dead_container_is_seen_and_brought_back",
    "tests/e2e/test_database_outage.py",
    "tests/docker/test_docker_wireguard.py",
    "tests/e2e/test_crash.py",
    "tests/docker/test_docker_converge.py::test_kill_during",
    "tests/docker/test_docker_remote.py",
    "tests/e2e/test_accounting.py",
    "tests/e2e/test_shadowsocks_users.py::test_concurrent_changes_on_one_server_all_succeed",
    "tests/docker/test_docker_runtime.py::test_docker_hosts_and_defaults",
    "tests/e2e/test_postgres_outage.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        where = item.nodeid.replace("\\", "/")
        return next((i for i, p in enumerate(SLOWEST) if where.startswith(p)), len(SLOWEST))

    items.sort(key=rank)  # stable: the rest keeps its order
