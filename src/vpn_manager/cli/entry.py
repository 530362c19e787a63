"""Console-script entry point. Kept tiny: `vpn --version` must not import Typer, Rich or SQLAlchemy."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["-V"]):
        from vpn_manager import __version__

        sys.stdout.write(f"vpn-manager {__version__}\n")
        return
    from vpn_manager.cli.app import run

    sys.exit(run(args))


if __name__ == "__main__":
    main()
