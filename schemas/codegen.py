"""The source of one generated Python function, shared by the compiled Avro reader and writer."""

from __future__ import annotations

import itertools


class Source:
    """The lines of the generated function, with fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names = itertools.count()

    def name(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}"

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)
