"""ANSI/INCITS 378-2004 finger minutiae record ("FMR\\0", " 20\\0").

Header, 26 bytes: identifier (4), version (4), record length (2; or 0x0000 followed by 4
bytes above 65,535), CBEFF product identifier (4), capture equipment (2), image width,
height (2 + 2), x/y resolution in pixels per cm (2 + 2), number of finger views (1),
reserved (1). Views as in ISO/IEC 19794-2:2005, except that the angle byte counts units
of 2 degrees (0..179).
"""

from __future__ import annotations

from lintas.biometrics.formats.common import read_view, write_view
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
    if length < header:
        raise r.fail(f"record length {length} is below the {header}-byte header")
    if length > len(data):
        raise r.fail(f"record length {length} but only {len(data)} bytes given (truncated)")
    if length < len(data):
        raise r.fail(f"{len(data) - length} bytes after the record's declared end")
    r.u32("CBEFF product identifier")
    r.u16("capture equipment")
    width, height = r.u16("image width"), r.u16("image height")
    res_x, res_y = r.u16("x resolution"), r.u16("y resolution")
    if not (0 < width < 1 << 14 and 0 < height < 1 << 14):
        raise r.fail(f"image size {width}x{height}: each side must be 1..16383")
    if not (res_x and res_y):
        raise r.fail("resolution must not be 0 (pixels per centimetre; 197 for 500 ppi)")
    count = r.u8("number of finger views")
    r.u8("reserved")
    views = tuple(read_view(r, width, height, ANGLE_UNIT, ANGLE_CODES) for _ in range(count))
    if r.pos != length:
        raise r.fail(f"{length - r.pos} bytes left after the last finger view")
    return MinutiaeTemplate(width, height, views, res_x, res_y)


def write(t: MinutiaeTemplate) -> bytes:
    if len(t.views) > 255:
        raise ValueError("at most 255 finger views")
    body = b"".join(write_view(v, ANGLE_UNIT, ANGLE_CODES) for v in t.views)
    length = HEADER + len(body)
    if length <= 0xFFFF:
        size = length.to_bytes(2, "big")
    else:
        length += 4
        size = (0).to_bytes(2, "big") + length.to_bytes(4, "big")
    header = (MAGIC + size + (0).to_bytes(4, "big") + (0).to_bytes(2, "big")
              + t.width.to_bytes(2, "big") + t.height.to_bytes(2, "big")
              + t.resolution_x.to_bytes(2, "big") + t.resolution_y.to_bytes(2, "big")
              + bytes([len(t.views), 0]))
    return header + body
