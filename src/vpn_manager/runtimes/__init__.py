"""Runtimes: where an engine runs (a native process under our supervision; Docker later)."""
