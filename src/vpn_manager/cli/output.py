"""All printing goes through Output: data to stdout in the chosen format, messages to stderr.

json and yaml are for scripts: stable keys, no colour, no truncation. table is for people; plain is
tab-separated values without a header, for `cut` and `awk`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

# Heavy imports wait for the first json or yaml output (`vpn --help` loads neither): yaml and
# pydantic-core, in data.

Column = tuple[str, str]  # (key in the record, header)
FORMATS = ("table", "json", "yaml", "plain")


def _colour_ok(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Output:
    def __init__(self, fmt: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.format = fmt
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    @property
    def structured(self) -> bool:
        return self.format in ("json", "yaml")

    def data(self, data: Any) -> None:
        """Write data as JSON or YAML."""
        if self.format == "yaml":
            import yaml

            self.out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        else:  # pydantic-core's encoder: json.dumps with indent falls back to pure Python
            from pydantic_core import to_json

            self.out.write(to_json(data, indent=2).decode() + "\n")

    def records(
        self,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[Column],
        text: Callable[[str, Any], str] | None = None,
        empty: str = "Nothing to show.",
    ) -> None:
        """A list of records: every key in json/yaml; the chosen columns in table/plain."""
        if self.structured:
            self.data(list(rows))
            return
        cell = text or _cell
        cells = [[cell(key, row.get(key)) for key, _ in columns] for row in rows]
        if self.format == "plain":
            self.out.write("".join("\t".join(line) + "\n" for line in cells))
            return
        if not rows:
            self.err.write(empty + "\n")
            return
        self._table([header for _, header in columns], cells)

    def record(self, data: dict[str, Any], text: Callable[[str, Any], str] | None = None) -> None:
        """One record: an object in json/yaml, key/value lines otherwise."""
        if self.structured:
            self.data(data)
            return
        cell = text or _cell
        pairs = [(key, cell(key, value)) for key, value in data.items()]
        if self.format == "plain":
            self.out.write("".join(f"{key}\t{value}\n" for key, value in pairs))
            return
        width = max(len(key) for key, _ in pairs)
        bold, reset = ("\033[1m", "\033[0m") if _colour_ok(self.out) else ("", "")
        self.out.write("".join(f"{bold}{key:<{width}}{reset}  {value}\n" for key, value in pairs))

    def result(self, data: dict[str, Any], message: str) -> None:
        """The outcome of an action: the data for scripts, one sentence for people."""
        if self.structured:
            self.data(data)
        else:
            self.out.write(message + "\n")

    def note(self, message: str) -> None:
        """Something a person should know, never part of the data: always stderr."""
        self.err.write(message + "\n")

    def _table(self, headers: list[str], cells: list[list[str]]) -> None:
        columns = list(zip(headers, *cells, strict=True))
        # Pad every column but the last to its widest cell (one pass per column, not per cell).
        padded = [_pad(column) for column in columns[:-1]]
        padded.append(list(columns[-1]))
        lines = ["  ".join(line).rstrip() for line in zip(*padded, strict=True)]
        bold, reset = ("\033[1m", "\033[0m") if _colour_ok(self.out) else ("", "")
        lines[0] = bold + lines[0] + reset
        self.out.write("\n".join(lines) + "\n")


def _pad(column: Sequence[str]) -> list[str]:
    width = max(map(len, column))
    return [value.ljust(width) for value in column]


def _cell(_key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):  # key=value pairs for people, never Python's repr of a dict
        return ", ".join(f"{key}={_cell(key, item)}" for key, item in value.items()) or "-"
    return str(value)
