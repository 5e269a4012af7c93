"""Reading JSONL files, with one error policy for the whole project.

A line that is not a JSON object (torn by a crash, hand-edited, another file's format) is never
dropped silently. `read_jsonl` either stops at the first bad line with a message naming the file
and line (`bad="raise"`, the default) or skips bad lines and counts them (`bad="skip"`, for files
that are appended to while others read them); either way `JsonlRead.bad_lines` names them.
Blank lines are no records and not errors. A path ending in .gz is read through gzip.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class JsonlError(ValueError):
    pass


@dataclass
class JsonlRead:
    path: str
    records: list[dict] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    def describe_bad(self, limit: int = 5) -> str:
        """"2 bad lines in f.jsonl (line 3: not valid JSON ...; line 9: ...)", or "" when none."""
        if not self.bad_lines:
            return ""
        shown = "; ".join(f"line {n}: {why}" for n, why in self.bad_lines[:limit])
        more = " ..." if len(self.bad_lines) > limit else ""
        return f"{len(self.bad_lines)} bad line(s) in {self.path} ({shown}{more})"


def iter_jsonl(path: str | Path, bad: str = "raise", read: JsonlRead | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object line. bad="raise": JsonlError at the first bad
    line; bad="skip": bad lines are recorded in `read.bad_lines` (pass a JsonlRead to see them)."""
    if bad not in ("raise", "skip"):
        raise ValueError(f"bad must be 'raise' or 'skip', got {bad!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such file: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                why = None if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
            except json.JSONDecodeError as e:
                why = f"not valid JSON ({e.msg})"
            if why is None:
                yield lineno, rec
            elif bad == "raise":
                raise JsonlError(f"{p}, line {lineno}: {why}; a JSONL file has one JSON object per line.")
            elif read is not None:
                read.bad_lines.append((lineno, why))


def read_jsonl(path: str | Path, bad: str = "raise") -> JsonlRead:
    """Every record of a JSONL file, with the bad lines named (see iter_jsonl)."""
    out = JsonlRead(str(path))
    out.records = [rec for _, rec in iter_jsonl(path, bad, out)]
    return out
