"""Console-script entry point. Kept tiny: `vpn --version` must not import Typer, Rich or
SQLAlchemy."""

from __future__ import annotations

import os
import sys

from vpn_manager import __version__


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["-V"]):
        sys.stdout.write(f"vpn-manager {__version__}\n")
        return
    # pydantic looks for plugins in every installed distribution's metadata on first use (~10 ms);
    # we use none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        from vpn_manager.cli.app import run

        code = run(args)
    except KeyboardInterrupt:  # Ctrl-C outside the command's own handler (importing, mounting)
        _interrupted()
    except RuntimeError as exc:
        # Ctrl-C while Python sets up a class (__set_name__) comes wrapped in a RuntimeError.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted()
        raise
    sys.exit(code)


def _interrupted() -> None:
    sys.stderr.write("Interrupted.\n")
    sys.exit(130)


if __name__ == "__main__":
    main()
