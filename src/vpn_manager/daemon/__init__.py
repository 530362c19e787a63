"""The service process's front end: `python -m vpn_manager.daemon.main` (what `vpn serve` execs
into) and its metrics page over HTTP. The work of each round is in services/rounds.py."""
