"""Runtimes: where an engine runs (a native process under our supervision, or a Docker container).
The contract is base.Runtime; choice.Runtimes picks a server's."""
