"""The REST API fuzzed by schemathesis from the OpenAPI document a real `vpn web` serves at
/api/openapi.json, with a write key: every operation gets generated requests (valid and not),
and no answer may be a 5xx or differ from the document (status, content type, body schema).

The home has users and a plan (named "alice", as is the user whose name half the cases take,
so that the plan routes find it too) but no server, so the server routes answer 404 at once.
Installing a server (POST /api/v1/servers) is left out: a valid request would start a real
engine on whatever port the fuzzer picked; installs are tested with real engines in tests/e2e."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from tests.cli_helpers import Cli
from tests.test_web_api import free_port, start_web, stop, wait_for

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


class Web:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.key = key


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    cli = Cli(tmp_path)
    assert cli("user", "add", "alice", "bob", "--quota", "5GB").code == 0
    assert cli("plan", "add", "alice", "--quota", "1GB", "--days", "30").code == 0
    made = cli("api-key", "create", "fuzzer", "--scope", "write", "--format", "json").json()
    key: str = made["key"]
    port, api_port = free_port(), free_port()
    process: subprocess.Popen[str] = start_web(
        tmp_path, "--port", str(port), "--api-port", str(api_port)
    )
    try:
        wait_for(api_port, process)
        yield Web(f"http://127.0.0.1:{api_port}", key)
    finally:
        err = stop(process)
        assert "Traceback" not in err, err


def operations(web: Web) -> list[APIOperation[Any, Any, Any, Any]]:
    schema = schemathesis.openapi.from_url(f"{web.base}/api/openapi.json", timeout=10)
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid OpenAPI
        found.append(result.ok())
    return [op for op in found if (op.method.upper(), op.path) != ("POST", "/api/v1/servers")]


def test_the_api_keeps_to_its_document(web: Web) -> None:
    """(schemathesis's pytest plugin is not used: it does not run under this pytest.)"""
    ops = operations(web)
    assert len(ops) >= 20
    paths = {(op.method.upper(), op.path) for op in ops}
    assert {("POST", "/api/v1/plans"), ("DELETE", "/api/v1/plans/{name}")} <= paths
    headers = {"Authorization": f"Bearer {web.key}"}
    calls = 0
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(mode))
            @settings(
                max_examples=6,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def keeps_to_it(case: schemathesis.Case[Any]) -> None:
                nonlocal calls
                calls += 1
                if case.path_parameters and calls % 2:  # half the time, a user who exists
                    case.path_parameters["name"] = "alice"
                case.call_and_validate(
                    base_url=web.base, headers=headers, checks=CHECKS, timeout=10
                )

            keeps_to_it()
    assert calls >= 2 * len(ops)
