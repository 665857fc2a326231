"""ANSI/INCITS 378-2004 finger minutiae record ("FMR\\0", " 20\\0").

Header, 26 bytes: identifier (4), version (4), record length (2; or 0x0000 followed by 4
bytes above 65,535), CBEFF product identifier (4), capture equipment (2), image width,
height (2 + 2), x/y resolution in pixels per cm (2 + 2), number of finger views (1),
reserved (1). Views as in ISO/IEC 19794-2:2005, except that the angle byte counts units
of 2 degrees (0..179).
"""

from __future__ import annotations

from lintas.biometrics.formats.common import (
    check_length,
    read_geometry_and_views,
    write_geometry_and_views,
)
from lintas.biometrics.formats.reader import Reader, TemplateFormatError
from lintas.biometrics.minutiae import MinutiaeTemplate

MAGIC = b"FMR\x00 20\x00"
HEADER = 26
ANGLE_UNIT, ANGLE_CODES = 2.0, 180


def read(data: bytes) -> MinutiaeTemplate:
    r = Reader(data)
    if r.take(8, "identifier and version") != MAGIC:
        raise TemplateFormatError("not an ANSI/INCITS 378-2004 record", 0)
    length = r.u16("record length")
    header = HEADER
    if length == 0:
        length = r.u32("record length (long form)")
        header += 4
    check_length(r, length, header, len(data))
    r.u32("CBEFF product identifier")
    return read_geometry_and_views(r, length, ANGLE_UNIT, ANGLE_CODES)


def write(t: MinutiaeTemplate) -> bytes:
    rest = (0).to_bytes(4, "big") + write_geometry_and_views(t, ANGLE_UNIT, ANGLE_CODES)
    length = len(MAGIC) + 2 + len(rest)
    if length <= 0xFFFF:
        return MAGIC + length.to_bytes(2, "big") + rest
    return MAGIC + (0).to_bytes(2, "big") + (length + 4).to_bytes(4, "big") + rest
