"""Spreadsheet exports that open in Excel with Korean intact: CSV (UTF-8 with BOM) and XLSX.

Both stream: rows come from an (async) iterator and go to a temporary file, so exporting
100,000 rows does not hold them in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

# Excel reads UTF-8 CSV only with this byte-order mark; without it Korean turns to mojibake.
BOM = "\ufeff"
# Excel would run a cell that starts with these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell_value(value: Any, timezone: str) -> Any:
    """A value as a spreadsheet shows it: local times without zone, plain text otherwise."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo(timezone))
        return value.replace(tzinfo=None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


async def _rows(rows: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]]):
    if hasattr(rows, "__aiter__"):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


async def csv_bytes(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    *,
    timezone: str = "Asia/Seoul",
) -> bytes:
    """A CSV file (UTF-8 with BOM, CRLF) that Excel opens with Korean text intact."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+b") as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        text.write(BOM)
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(headers)
        async for row in _rows(rows):
            writer.writerow([_csv_text(cell_value(v, timezone)) for v in row])
        text.flush()
        spool.seek(0)
        data = spool.read()
        text.detach()
        return data


def _csv_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value


async def xlsx_bytes(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    *,
    sheet_title: str = "moim",
    timezone: str = "Asia/Seoul",
) -> bytes:
    """An XLSX workbook written row by row (openpyxl's write-only mode)."""
    # Imported here: openpyxl (with Pillow) costs every process ~0.1 s of start-up and ~9 MB,
    # and most never write a spreadsheet.
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_sheet_title(sheet_title))
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, value=header)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)
    async for row in _rows(rows):
        values = [cell_value(v, timezone) for v in row]
        sheet.append(values)
    with tempfile.TemporaryFile() as handle:
        workbook.save(handle)
        handle.seek(0)
        return handle.read()


def _sheet_title(title: str) -> str:
    """Excel sheet names: at most 31 characters, none of []:*?/\\."""
    cleaned = "".join("_" if ch in "[]:*?/\\" else ch for ch in title).strip() or "moim"
    return cleaned[:31]
