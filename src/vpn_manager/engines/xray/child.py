"""`python -m vpn_manager.engines.xray.child [--binary XRAY] CONFIG`: run one Xray instance from a
config file, through the PyPI `Xray-core` binding or, with --binary, an `xray` executable (then
this process waits for it and passes SIGTERM/SIGINT on). Blocks until SIGTERM/SIGINT. A config
the binding refuses makes the process exit with code 23 and no message (the binding's
behaviour); validation relies on that.

Before Xray starts, the decoy page of a TLS server (engines/xray/decoy.py) is served on the unix
socket its config's fallbacks name, from a thread of this process: it lives and dies with the
engine."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from vpn_manager.engines.xray import decoy
from vpn_manager.proc import die_with_parent


def main(args: list[str]) -> None:
    binary = None
    if len(args) == 3 and args[0] == "--binary":
        binary, args = args[1], args[2:]
    if len(args) != 1:
        sys.stderr.write("usage: python -m vpn_manager.engines.xray.child [--binary XRAY] CONFIG\n")
        sys.exit(64)
    text = Path(args[0]).read_text(encoding="utf-8")

    if binary is not None:
        sys.exit(run_binary(binary, args[0], text))
    decoy.serve_from_config(text)
    import xray

    xray.startFromJSON(text)


def run_binary(binary: str, config: str, text: str) -> int:
    """Start the binary (before any thread: preexec_fn), then serve the decoy beside it."""
    process = subprocess.Popen(
        [binary, "run", "-c", config],
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 (no thread yet)
    )

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    decoy.serve_from_config(text)
    return process.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
