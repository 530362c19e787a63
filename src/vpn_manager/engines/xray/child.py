"""`python -m vpn_manager.engines.xray.child CONFIG`: run one Xray instance from a config file
through the PyPI `Xray-core` binding. Blocks until SIGTERM/SIGINT. A config Xray refuses makes the
process exit with code 23 and no message (the binding's behaviour); validation relies on that."""

from __future__ import annotations

import sys
from pathlib import Path


def main(args: list[str]) -> None:
    if len(args) != 1:
        sys.stderr.write("usage: python -m vpn_manager.engines.xray.child CONFIG\n")
        sys.exit(64)
    text = Path(args[0]).read_text(encoding="utf-8")
    import xray

    xray.startFromJSON(text)


if __name__ == "__main__":
    main(sys.argv[1:])
