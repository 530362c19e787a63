"""The project's benchmark: times the real `vpn` console script against the product spec's numbers.

Run it from the repository root with `.venv/bin/python bench/run.py`; see bench/README.md.
"""
