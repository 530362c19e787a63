"""`python -m vpn_manager.runtimes.launch LOCK PIDFILE -- ARGV...`: the shim every native engine
process starts through. It takes an exclusive lock on LOCK and keeps it across exec, so the lock is
held exactly as long as the engine lives: "is it running?" is "is the lock taken?", which no stale
pid file or reused pid can fool, and a second start of the same server cannot get past it."""

from __future__ import annotations

import fcntl
import os
import sys

ALREADY_RUNNING = 75  # EX_TEMPFAIL


def main(args: list[str]) -> None:
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: launch LOCK PIDFILE -- ARGV...\n")
        sys.exit(64)
    lock_path, pid_path, argv = args[0], args[1], args[3:]
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write(f"launch: {lock_path} is held: the engine is running already\n")
        sys.exit(ALREADY_RUNNING)
    os.set_inheritable(fd, True)
    tmp = f"{pid_path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(tmp, pid_path)
    # What the engine creates is ours alone: its error and access logs hold client IPs (Xray and
    # sing-box create them 0644 under the usual umask), its cache files user data.
    os.umask(0o077)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
