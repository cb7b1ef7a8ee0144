"""Rack-scanner CSV exports (FluidX / Ziath / generic). Pure, no database."""

from __future__ import annotations

import random
import string

import pytest

from biobank.identifiers import Kind, format_id
from biobank.rack_csv import (
    MAX_ERRORS,
    RackCell,
    RackRead,
    normalise_position,
    parse_rack_csv,
)

RACK = format_id(Kind.BOX, 17)
POSITIONS = [f"{row}{col}" for row in "ABCDEFGH" for col in range(1, 13)]
NO_READ = {"C5", "F11"}
EMPTY = {"H12"}


def _tube(index: int) -> str:
    return format_id(Kind.UNIT, 1000 + index)


def _full_rack_file() -> bytes:
    """96 lines, header and rack barcode, UTF-8 BOM and CRLF, as FluidX software writes."""
    lines = ["Rack,Position,Tube"]
    for index, position in enumerate(POSITIONS):
        if position in NO_READ:
            tube = "NO READ"
        elif position in EMPTY:
            tube = ""
        else:
            tube = _tube(index)
        lines.append(f"{RACK},{position},{tube}")
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def _assert_full_rack(read: RackRead) -> None:
    assert read.errors == []
    assert read.ok
    assert read.rack == RACK
    assert read.has_header
    assert read.delimiter == ","
    assert read.missing == []
    assert [c.position for c in read.cells] == POSITIONS
    for index, (position, cell) in enumerate(zip(POSITIONS, read.cells, strict=True)):
        assert cell.line == index + 2  # line 1 is the header
        if position in NO_READ:
            assert (cell.status, cell.tube, cell.parsed) == ("no_read", None, None)
        elif position in EMPTY:
            assert (cell.status, cell.tube, cell.parsed) == ("empty", None, None)
        else:
            assert cell.status == "ok"
            assert cell.tube == _tube(index)
            assert cell.parsed is not None
            assert cell.parsed.kind is Kind.UNIT
            assert cell.parsed.number == 1000 + index
            assert cell.id_error is None


def _codes(read: RackRead) -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in read.errors]


# --- well-formed files -------------------------------------------------------------------


def test_full_96_tube_rack_with_bom_and_crlf() -> None:
    data = _full_rack_file()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    _assert_full_rack(parse_rack_csv(data))


def test_same_file_as_str_and_as_utf16() -> None:
    data = _full_rack_file()
    _assert_full_rack(parse_rack_csv(data.decode("utf-8")))  # str still carries the BOM
    _assert_full_rack(parse_rack_csv(data.decode("utf-8-sig").encode("utf-16")))


def test_cell_lookup() -> None:
    read = parse_rack_csv(_full_rack_file())
    cell = read.cell("a01")
    assert cell is not None and cell.tube == _tube(0)
    assert read.cell("Z99") is None


def test_zero_padded_and_lowercase_positions_and_sloppy_tubes() -> None:
    data = (
        "TubeRack,Well,TubeCode\n"
        f"{RACK},A01, {_tube(0).lower()} \n"
        f"{RACK},a02,{_tube(1)}\n"
        f"{RACK},B12,{_tube(2)}\t\n"
        f"{RACK}, h09 ,No Read\n"
        f"{RACK},A-3,{_tube(3)}\n"
    )
    read = parse_rack_csv(data)
    assert read.errors == []
    assert [c.position for c in read.cells] == ["A1", "A2", "B12", "H9", "A3"]
    assert [c.tube for c in read.cells] == [_tube(0), _tube(1), _tube(2), None, _tube(3)]
    assert read.cells[3].status == "no_read"


def test_two_columns_without_header() -> None:
    read = parse_rack_csv(f"A1,{_tube(0)}\nA2,{_tube(1)}\nA3,NOREAD\nA4,\n")
    assert read.errors == []
    assert not read.has_header
    assert read.rack is None
    assert [(c.position, c.status, c.line) for c in read.cells] == [
        ("A1", "ok", 1),
        ("A2", "ok", 2),
        ("A3", "no_read", 3),
        ("A4", "empty", 4),
    ]
    assert "A5" in read.missing and len(read.missing) == 92


def test_three_columns_without_header() -> None:
    read = parse_rack_csv(f"{RACK},A01,{_tube(0)}\r\n{RACK},A02,{_tube(1)}\r\n")
    assert read.errors == []
    assert read.rack == RACK
    assert [c.tube for c in read.cells] == [_tube(0), _tube(1)]


def test_trailing_delimiter_without_header() -> None:
    read = parse_rack_csv(f"A01,{_tube(0)},\nA02,{_tube(1)},\n")
    assert read.errors == []
    assert [c.tube for c in read.cells] == [_tube(0), _tube(1)]


def test_semicolon_delimited() -> None:
    read = parse_rack_csv(f"Position;Barcode\nA01;{_tube(0)}\nA02;NO TUBE\nA03;EMPTY\n")
    assert read.errors == []
    assert read.delimiter == ";"
    assert [c.status for c in read.cells] == ["ok", "empty", "empty"]


def test_tab_delimited_with_extra_columns() -> None:
    data = (
        "Rack ID\tTube Position\tTube Barcode\tStatus\tDate\n"
        f"{RACK}\tA01\t{_tube(0)}\tOK\t2025-01-02\n"
        f"{RACK}\tA02\tNo Read\tERR\t2025-01-02\n"
    )
    read = parse_rack_csv(data)
    assert read.errors == []
    assert read.delimiter == "\t"
    assert read.rack == RACK
    assert [c.status for c in read.cells] == ["ok", "no_read"]


@pytest.mark.parametrize(
    ("marker", "status"),
    [
        ("NO READ", "no_read"),
        ("NOREAD", "no_read"),
        ("No Read", "no_read"),
        ("no_read", "no_read"),
        ("No Tube", "empty"),
        ("NO TUBE", "empty"),
        ("EMPTY", "empty"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_tube_markers(marker: str, status: str) -> None:
    read = parse_rack_csv(f"Position,Tube\nA1,{marker}\n")
    assert read.errors == []
    assert (read.cells[0].status, read.cells[0].tube) == (status, None)


def test_tube_that_is_not_a_biobank_identifier_is_kept_with_a_reason() -> None:
    wrong_check = _tube(1)[:-1] + ("X" if _tube(1)[-1] != "X" else "Y")
    read = parse_rack_csv(f"Position,Tube\nA1,0123456789\nA2,{wrong_check}\n")
    assert read.errors == []  # validation is the caller's decision
    first, second = read.cells
    assert (first.status, first.tube, first.parsed) == ("ok", "0123456789", None)
    assert first.id_error_code == "bad_format"
    assert first.id_error
    assert second.id_error_code == "bad_check_character"


def test_blank_lines_are_ignored_and_line_numbers_stay_physical() -> None:
    read = parse_rack_csv(f"\n\nPosition,Tube\n\nA1,{_tube(0)}\n ,\n\nA2,{_tube(1)}\n\n")
    assert read.errors == []
    assert [(c.position, c.line) for c in read.cells] == [("A1", 5), ("A2", 8)]


def test_other_geometry() -> None:
    # A 9x9 cryobox, positions A1..I9.
    lines = [
        f"{r}{c},{format_id(Kind.UNIT, i + 1)}"
        for i, (r, c) in enumerate((r, c) for r in "ABCDEFGHI" for c in range(1, 10))
    ]
    read = parse_rack_csv("\n".join(lines), rows=9, cols=9)
    assert read.errors == []
    assert len(read.cells) == 81
    assert read.cells[-1].position == "I9"
    custom = parse_rack_csv("P1,X\nQ2,Y\n", rows=2, cols=2, row_labels="PQ")
    assert custom.errors == []
    assert custom.missing == ["P2", "Q1"]


# --- errors ------------------------------------------------------------------------------


def test_duplicate_position() -> None:
    read = parse_rack_csv(f"Position,Tube\nA1,{_tube(0)}\nA01,{_tube(1)}\n")
    assert _codes(read) == [(3, "position")]
    assert "line 2" in read.errors[0].message
    assert [c.tube for c in read.cells] == [_tube(0)]  # the first line wins


def test_duplicate_tube() -> None:
    read = parse_rack_csv(f"Position,Tube\nA1,{_tube(0)}\nB1,{_tube(0).lower()}\n")
    assert _codes(read) == [(3, "tube")]
    message = read.errors[0].message
    assert _tube(0) in message and "A1" in message and "B1" in message
    assert [c.position for c in read.cells] == ["A1", "B1"]


def test_no_reads_and_empties_are_not_duplicate_tubes() -> None:
    read = parse_rack_csv("Position,Tube\nA1,NO READ\nA2,NO READ\nA3,\nA4,\n")
    assert read.errors == []


def test_position_outside_geometry() -> None:
    read = parse_rack_csv(f"Position,Tube\nA1,{_tube(0)}\nI1,{_tube(1)}\nA13,{_tube(2)}\n")
    assert _codes(read) == [(3, "position"), (4, "position")]
    assert "I1" in read.errors[0].message and "8 x 12" in read.errors[0].message
    assert [c.position for c in read.cells] == ["A1"]


@pytest.mark.parametrize("position", ["1", "AA1", "A", "A1B", "?", "A 1 2"])
def test_unparseable_position(position: str) -> None:
    read = parse_rack_csv(f"Position,Tube\n{position},{_tube(0)}\n")
    assert (2, "position") in _codes(read)


def test_mixed_rack_barcodes() -> None:
    other = format_id(Kind.BOX, 18)
    data = (
        f"Rack,Position,Tube\n{RACK},A1,{_tube(0)}\n{RACK},A2,{_tube(1)}\n{other},A3,{_tube(2)}\n"
    )
    read = parse_rack_csv(data)
    assert _codes(read) == [(4, "rack")]
    assert RACK in read.errors[0].message and other in read.errors[0].message
    assert read.rack == RACK


def test_short_line_and_extra_values() -> None:
    read = parse_rack_csv(f"Rack,Position,Tube\n{RACK},A1\n{RACK},A2,{_tube(0)},surprise\n")
    assert _codes(read) == [(2, "row"), (3, "row"), (0, "file")]


def test_header_without_tube_column() -> None:
    read = parse_rack_csv("Rack,Position,Volume\nR,A1,10\n")
    assert _codes(read) == [(1, "header")]
    assert "tube" in read.errors[0].message


def test_unrecognisable_columns_without_header() -> None:
    read = parse_rack_csv("a,b,c,d\n1,2,3,4\n")
    assert _codes(read) == [(1, "header")]


@pytest.mark.parametrize(
    "data",
    [
        random.Random(7).randbytes(2048) + b"\xff",  # deterministic: same ids on xdist workers
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00",  # .xlsx
        b"A1,UN0000001Q\x00\x00\x00",
        b"",
        b"   \r\n\r\n",
        b"Dear lab, please find the rack attached. Regards",
        b"Just some prose without any separators at all",
        b'{"rack": "R1", "tubes": [1, 2, 3]}',
        b"\xfe\xff\xd8\x00",  # a UTF-16 BOM followed by a lone surrogate
        "Position,Tube\n" + "\n".join(string.ascii_letters),
    ],
)
def test_garbage_files_give_errors_not_exceptions(data: bytes | str) -> None:
    read = parse_rack_csv(data)
    assert read.errors
    assert not read.ok
    assert all(e.message for e in read.errors)


def test_garbage_messages_are_specific() -> None:
    assert "Excel" in parse_rack_csv(b"PK\x03\x04rest").errors[0].message
    assert "UTF-8" in parse_rack_csv(b"A1,\xff\xfe\xfa\n").errors[0].message
    assert "empty" in parse_rack_csv(b"").errors[0].message
    assert "NUL" in parse_rack_csv(b"A1,X\x00\n").errors[0].message
    prose = parse_rack_csv(b"Dear lab, please find the rack attached.").errors
    assert prose[-1].field == "file"


def test_too_large_file() -> None:
    read = parse_rack_csv(b"A1,X\n" * 300_000)
    assert _codes(read) == [(0, "file")]


def test_very_long_line() -> None:
    read = parse_rack_csv("Position,Tube\nA1," + "X" * 200_000 + "\n")
    assert _codes(read) == [(2, "file")]
    assert "200003 characters" in read.errors[0].message


def test_error_count_is_capped() -> None:
    read = parse_rack_csv("Position,Tube\n" + "Z99,X\n" * 1_000)
    assert len(read.errors) == MAX_ERRORS + 1
    assert "Stopped" in read.errors[-1].message


def test_unbalanced_quote_does_not_raise() -> None:
    read = parse_rack_csv(f'Position,Tube\nA1,"{_tube(0)}\nA2,{_tube(1)}\nA3,{_tube(2)}\n')
    assert (2, "row") in _codes(read)
    assert "line 2 to line 4" in read.errors[0].message
    # A quote at the very end (csv reads to end of file) must not raise either.
    assert parse_rack_csv('Position,Tube\nA1,"').errors


# --- programmer errors and helpers -------------------------------------------------------


def test_programmer_errors_raise() -> None:
    with pytest.raises(TypeError):
        parse_rack_csv(["A1,X"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_rack_csv("A1,X", rows=0)
    with pytest.raises(ValueError):
        parse_rack_csv("A1,X", rows=27)
    with pytest.raises(ValueError):
        parse_rack_csv("A1,X", rows=2, row_labels="ABC")
    with pytest.raises(ValueError):
        parse_rack_csv("A1,X", rows=2, row_labels="AA")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("A1", "A1"), ("A01", "A1"), ("a01", "A1"), (" h12 ", "H12"), ("A-1", "A1"), ("1A", None)],
)
def test_normalise_position(raw: str, expected: str | None) -> None:
    assert normalise_position(raw) == expected


def test_rack_cell_is_immutable() -> None:
    cell = RackCell(position="A1", tube=None, status="empty", line=1)
    with pytest.raises(AttributeError):
        cell.position = "B1"  # type: ignore[misc]
