"""Subscription tokens: random, hashed for lookups, sealed with the home's key for printing."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from vpn_manager.errors import ConfigError
from vpn_manager.services.tokens import TokenSeal, digest, new_token


def test_a_token_is_256_random_bits_url_safe() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in list(tokens)[:50]:
        assert len(token) == 43
        assert token.replace("-", "").replace("_", "").isalnum()
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_seal_and_open(tmp_path: Path) -> None:
    seal = TokenSeal(tmp_path / "data" / "subscription.key")
    token = new_token()
    sealed = seal.seal(token)
    assert token not in sealed
    assert seal.seal(token) != sealed  # a fresh nonce each time
    assert TokenSeal(seal.key_file).open(sealed) == token
    assert stat.S_IMODE(seal.key_file.stat().st_mode) == 0o600
    assert seal.key_file.stat().st_size == 32


def test_another_homes_key_opens_nothing(tmp_path: Path) -> None:
    sealed = TokenSeal(tmp_path / "a.key").seal(new_token())
    assert TokenSeal(tmp_path / "b.key").open(sealed) is None  # no key: none made to open
    TokenSeal(tmp_path / "b.key").seal("x")  # now b has a key of its own
    assert TokenSeal(tmp_path / "b.key").open(sealed) is None
    assert TokenSeal(tmp_path / "a.key").open("not base64!") is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_damaged_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "subscription.key"
    key.write_bytes(b"short")
    with pytest.raises(ConfigError, match="not a subscription key"):
        TokenSeal(key).seal("x")


def _seal_once(key: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    seal = TokenSeal(Path(key))
    out.put(seal.seal("token"))


def test_processes_making_the_key_at_once_agree(tmp_path: Path) -> None:
    key = tmp_path / "subscription.key"
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [multiprocessing.Process(target=_seal_once, args=(str(key), out)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    sealed = [out.get(timeout=5) for _ in workers]
    assert all(TokenSeal(key).open(s) == "token" for s in sealed)
