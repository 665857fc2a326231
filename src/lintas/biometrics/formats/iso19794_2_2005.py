"""ISO/IEC 19794-2:2005 finger minutiae record ("FMR\\0", " 20\\0").

Header, 24 bytes: identifier (4), version (4), record length (4), capture equipment
(2), image width, height (2 + 2), x/y resolution in pixels per cm (2 + 2), number of
finger views (1), reserved (1). Each view: position (1), view number << 4 | impression
type (1), finger quality (1), minutiae count (1), minutiae (6 bytes each: type << 14 | x,
y, angle in units of 360/256 degrees, quality), extended data length (2) and data.
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
HEADER = 24
ANGLE_UNIT, ANGLE_CODES = 360 / 256, 256


def read(data: bytes) -> MinutiaeTemplate:
    r = Reader(data)
    if r.take(8, "identifier and version") != MAGIC:
        raise TemplateFormatError("not an ISO/IEC 19794-2:2005 record", 0)
    length = r.u32("record length")
    check_length(r, length, HEADER, len(data))
    return read_geometry_and_views(r, length, ANGLE_UNIT, ANGLE_CODES)


def write(t: MinutiaeTemplate) -> bytes:
    rest = write_geometry_and_views(t, ANGLE_UNIT, ANGLE_CODES)
    return MAGIC + (len(MAGIC) + 4 + len(rest)).to_bytes(4, "big") + rest
