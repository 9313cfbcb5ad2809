"""Reading a table of rows by column name (CSV, TSV, JSON lines, Parquet), keeping where each row came from.

    table = read_table(Path("captions.parquet"), required=["video", "caption"], optional=["start", "end"])
    table.columns["video"][i], table.where(i)   # -> "captions.parquet row 12"

The format follows the file's extension: ``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``, ``.parquet``/``.pq``.
Text must be UTF-8 (a byte-order mark is allowed). CSV/TSV values are stripped strings; JSON lines and Parquet
keep their types (numbers, null), checked by the caller. Errors name the file and the line (JSON lines, CSV)
or row (Parquet, counted from 1 after the header), and list the columns found when a needed one is absent.
Parquet is read with pyarrow, never pandas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class Table:
    path: Path
    columns: dict[str, list[Any]]  # every required and every present optional column, one value per row
    lines: list[int]  # the line (CSV, JSON lines) or row number (Parquet) of each row
    unit: str  # "line" or "row"

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, index: int) -> str:
        return f"{self.path} {self.unit} {self.lines[index]}"


def table_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown table format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return fmt


def read_table(path: str | Path, required: Sequence[str], optional: Sequence[str] = ()) -> Table:
    """The columns ``required`` (each must exist) and those of ``optional`` that exist, row by row."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"table not found: {path}" if not path.exists() else f"{path} is not a file")
    if fmt == "parquet":
        return _read_parquet(path, required, optional)
    data = _utf8_text(path)
    if fmt == "jsonl":
        return _read_jsonl(path, data, required, optional)
    return _read_delimited(path, data, "\t" if fmt == "tsv" else ",", required, optional)


def _utf8_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the table as UTF-8"
        ) from None


def _absent_error(path: Path, where: str, found: Sequence[str], absent: Sequence[str]) -> DataError:
    listing = ", ".join(repr(c) for c in found) or "none"
    return DataError(
        f"{path} {where}: no column {', '.join(repr(c) for c in absent)} (columns found: {listing}); "
        "name yours with data.dataset_options.columns, e.g. {video: filepath, caption: title}"
    )


def _read_delimited(path: Path, text: str, delimiter: str, required, optional) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path} line 1: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path} line 1: no header row; the first line must name the columns")
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise DataError(f"{path} line 1: column {repeated[0]!r} is named twice")
    absent = [c for c in required if c not in header]
    if absent:
        raise _absent_error(path, "line 1", header, absent)
    wanted = [c for c in [*required, *optional] if c in header]
    positions = [header.index(c) for c in wanted]
    values: list[list[str]] = [[] for _ in wanted]
    lines: list[int] = []
    width = len(header)
    previous = reader.line_num
    try:
        for row in reader:
            line = previous + 1  # where the row starts (a quoted field may span lines)
            previous = reader.line_num
            if not row:
                continue  # a blank line
            if len(row) != width:
                raise DataError(f"{path} line {line}: {len(row)} fields, the header has {width}")
            for column, position in zip(values, positions):
                column.append(row[position].strip())
            lines.append(line)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    return Table(path, dict(zip(wanted, values)), lines, "line")


def _read_jsonl(path: Path, text: str, required, optional) -> Table:
    wanted = [*required, *optional]
    values: dict[str, list[Any]] = {c: [] for c in wanted}
    lines: list[int] = []
    seen: set[str] = set()  # the optional columns some row has
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        absent = [c for c in required if c not in row]
        if absent:
            raise _absent_error(path, f"line {number}", list(row), absent)
        seen.update(c for c in optional if c in row)
        for column in wanted:
            values[column].append(row.get(column))
        lines.append(number)
    return Table(path, {c: values[c] for c in wanted if c in required or c in seen}, lines, "line")


def _read_parquet(path: Path, required, optional) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a Parquet file: {exc}") from None
    names = list(schema.names)
    absent = [c for c in required if c not in names]
    if absent:
        raise _absent_error(path, "(schema)", names, absent)
    wanted = [c for c in [*required, *optional] if c in names]
    try:
        table = pq.read_table(path, columns=wanted)
        columns = {c: table.column(c).to_pylist() for c in wanted}
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: a text column is not UTF-8; write the table with UTF-8 strings") from None
    rows = table.num_rows
    return Table(path, columns, list(range(1, rows + 1)), "row")
