"""Subscription tokens: random, hashed for lookups, sealed with the home's key for printing."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import Cli, database_file
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


def test_a_killed_makers_temp_file_is_swept_once_stale(tmp_path: Path) -> None:
    key = tmp_path / "subscription.key"
    TokenSeal(key).seal("token")
    stale = tmp_path / ".subscription.key.0123abcd.tmp"
    fresh = tmp_path / ".subscription.key.4567cdef.tmp"  # a live maker's, a moment ago
    for temp in (stale, fresh):
        temp.write_bytes(b"k" * 32)
    old = time.time() - 120
    os.utime(stale, (old, old))
    TokenSeal(key).seal("token")  # a new process reads the key
    assert not stale.exists()
    assert fresh.exists()
    assert key.exists()


def test_kill_9_while_minting_a_url_leaves_one_that_works(tmp_path: Path) -> None:
    """`vpn user link --subscription` killed at any moment: the next one prints a URL whose
    token the database knows, and the key file and the sealed copy agree."""
    cli = Cli(tmp_path)
    assert cli("user", "add", "alice").code == 0
    # from before the imports end to after the mint (a quiet machine prints in about 0.4 s)
    delays = [random.Random(seed).uniform(0.05, 0.8) for seed in range(4)]
    for delay in delays:
        # a new token each time, so each kill lands in a mint
        assert cli("user", "rotate-token", "alice").code == 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpn_manager", "user", "link", "alice", "--subscription"],
            env=cli.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        again = cli("user", "link", "alice", "--subscription")
        assert again.code == 0, again.stderr
        token = again.stdout.strip().rsplit("/", 1)[-1]
        with sqlite3.connect(database_file(cli.home)) as db:
            hashed, sealed = db.execute(
                "SELECT subscription_hash, subscription_sealed FROM users WHERE name = 'alice'"
            ).fetchone()
        assert hashed == digest(token)
        assert TokenSeal(cli.home / "data" / "subscription.key").open(sealed) == token
        assert cli("user", "link", "alice", "--subscription").stdout.strip().endswith(token)
