"""Reading annotation files, with errors that name the file and the line or entry at fault."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

from ..errors import DataError


class AnnotationFileMissing(DataError):
    """A split's annotation file is not there (``prepare`` skips such splits unless they were asked for)."""


class EmptySplit(DataError):
    """The annotations hold no records for a split (``prepare`` of every split skips it)."""


def require(folder: Path, name: str, what: str = "") -> Path:
    path = optional_file(folder, name)
    if path is None:
        hint = f" ({what})" if what else ""
        raise AnnotationFileMissing(f"annotation file not found: {folder / name}{hint}")
    return path


def optional_file(folder: Path, name: str) -> Path | None:
    """``folder / name`` if it is a file, None if nothing is there; anything else there is an error (a
    directory in a file's place must not pass for a missing file, which would skip a split)."""
    path = folder / name
    if path.is_file():
        return path
    if path.exists():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise DataError(f"{path} is {kind}; expected an annotation file there")
    return None


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc


def read_id_list(path: Path) -> list[str]:
    """One video id per line (blank lines skipped); a repeated id is an error naming both lines."""
    ids: dict[str, int] = {}
    for number, line in enumerate(_lines(path), start=1):
        video_id = line.strip()
        if not video_id:
            continue
        if video_id in ids:
            raise DataError(f"{path} line {number}: video {video_id!r} repeats line {ids[video_id]}")
        ids[video_id] = number
    if not ids:
        raise DataError(f"{path}: no video ids")
    return list(ids)


def read_csv(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row; the header must name ``columns`` (others are ignored)."""
    text = "\n".join(_lines(path))
    reader = csv.DictReader(io.StringIO(text))
    header = [c.strip() for c in (reader.fieldnames or [])]
    absent = [c for c in columns if c not in header]
    if absent:
        raise DataError(f"{path} line 1: header {header} lacks column(s) {', '.join(absent)}")
    reader.fieldnames = header
    rows = []
    for row in reader:
        number = reader.line_num
        if None in row or any(row.get(c) is None for c in columns):
            raise DataError(f"{path} line {number}: expected {len(header)} fields, got a different number")
        values = {c: row[c].strip() for c in columns}
        empty = [c for c in columns if not values[c]]
        if empty:
            raise DataError(f"{path} line {number}: empty {', '.join(empty)}")
        rows.append((number, values))
    return rows


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and strings only: an annotation pickle must not run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is allowed")


def read_plain_pickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return _PlainDataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a pickle of plain data: {exc}") from exc


def caption_text(value: Any, where: str) -> str:
    """A caption as a stripped, non-empty string (a list of tokens is joined with spaces)."""
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        value = " ".join(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a non-empty caption, got {value!r}")
    return value.strip()


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
