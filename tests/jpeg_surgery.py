"""Byte-level edits of real JPEGs, used to make bad inputs for the reader's tests."""

from __future__ import annotations


def find_marker(data: bytes, code: int, start: int = 2) -> int:
    """Offset of the first marker 0xFF<code> in the header part of a JPEG (walking segments)."""
    pos = start
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"not at a marker at offset {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == code:
            return pos
        if marker == 0xDA:
            raise ValueError(f"marker 0x{code:02X} not found before the first scan")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
    raise ValueError(f"marker 0x{code:02X} not found")


def sos_data_start(data: bytes) -> int:
    """Offset of the first byte of entropy-coded data of the first scan."""
    sos = find_marker(data, 0xDA)
    return sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")


def sof_offset(data: bytes) -> int:
    for code in (0xC0, 0xC1, 0xC2, 0xC9, 0xCA):
        try:
            return find_marker(data, code)
        except ValueError:
            continue
    raise ValueError("no SOF marker")


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The same file claiming another image size in its SOF marker."""
    sof = sof_offset(data)
    out = bytearray(data)
    out[sof + 5:sof + 7] = height.to_bytes(2, "big")
    out[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(out)


def with_precision(data: bytes, bits: int) -> bytes:
    sof = sof_offset(data)
    out = bytearray(data)
    out[sof + 4] = bits
    return bytes(out)


def with_zero_qstep(data: bytes, index: int = 5) -> bytes:
    """Set one step of the first quantisation table (8-bit) to zero."""
    dqt = find_marker(data, 0xDB)
    out = bytearray(data)
    assert out[dqt + 4] >> 4 == 0, "expects an 8-bit table"
    out[dqt + 5 + index] = 0
    return bytes(out)


def with_scan_garbage(data: bytes, fraction: float = 0.4) -> bytes:
    """Overwrite a stretch in the middle of the entropy-coded data with a bogus marker run."""
    start = sos_data_start(data)
    pos = start + int((len(data) - start) * fraction)
    out = bytearray(data)
    # 0xFF followed by a marker code that cannot appear inside a scan: libjpeg stops the
    # segment there (premature end of data segment / extraneous bytes).
    out[pos:pos + 16] = bytes([0xFF, 0xC4] * 8)
    return bytes(out)
