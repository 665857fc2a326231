"""What ISO/IEC 19794-2:2005 and ANSI/INCITS 378-2004 share: the finger view record
and its 6-byte minutiae. They differ in the header and the unit of the angle byte."""

from __future__ import annotations

from lintas.biometrics.formats.reader import Reader
from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType

IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})  # live/non-live plain/rolled, swipe


def read_minutia(r: Reader, width: int, height: int, angle_unit: float,
                 angle_codes: int, quality_absent: set[int]) -> Minutia:
    start = r.pos
    word = r.u16("minutia x")
    kind, x = word >> 14, word & 0x3FFF
    y = r.u16("minutia y") & 0x3FFF  # the top two bits are reserved
    code = r.u8("minutia angle")
    quality = r.u8("minutia quality")
    if kind == 3:
        raise r.fail(f"minutia at byte {start}: type code 3 is reserved")
    if x >= width or y >= height:
        raise r.fail(f"minutia at byte {start}: ({x}, {y}) outside the {width}x{height} image")
    if code >= angle_codes:
        raise r.fail(f"minutia at byte {start}: angle code {code} above {angle_codes - 1}")
    if quality > 100 and quality not in quality_absent:
        raise r.fail(f"minutia at byte {start}: quality {quality} above 100")
    return Minutia(x=x, y=y, angle=(code * angle_unit) % 360, type=MinutiaType(kind),
                   quality=None if quality in quality_absent or quality == 0 else quality)


def angle_code(angle: float, unit: float, codes: int) -> int:
    return round(angle / unit) % codes


def read_view(r: Reader, width: int, height: int, angle_unit: float,
              angle_codes: int) -> FingerView:
    position = r.u8("finger position")
    if position > 10:
        raise r.fail(f"finger position {position} is not 0..10")
    packed = r.u8("view number and impression type")
    view, impression = packed >> 4, packed & 0x0F
    if impression not in IMPRESSION_TYPES:
        raise r.fail(f"impression type {impression} is not one of {sorted(IMPRESSION_TYPES)}")
    quality = r.u8("finger quality")
    if quality > 100:
        raise r.fail(f"finger quality {quality} above 100")
    count = r.u8("number of minutiae")
    minutiae = tuple(read_minutia(r, width, height, angle_unit, angle_codes, set())
                     for _ in range(count))
    extended = r.u16("extended data block length")
    r.take(extended, "extended data block")  # ridge counts, cores and deltas: kept aside
    return FingerView(position=position, minutiae=minutiae, quality=quality, view=view,
                      impression=impression)


def write_view(view: FingerView, angle_unit: float, angle_codes: int) -> bytes:
    if view.impression not in IMPRESSION_TYPES:
        raise ValueError(f"impression type {view.impression} cannot be written in this format")
    out = bytearray([view.position, (view.view << 4) | (view.impression & 0x0F), view.quality,
                     len(view.minutiae)])
    for m in view.minutiae:
        out += ((int(m.type) << 14) | m.x).to_bytes(2, "big")
        out += m.y.to_bytes(2, "big")
        out += bytes([angle_code(m.angle, angle_unit, angle_codes), m.quality or 0])
    out += (0).to_bytes(2, "big")  # extended data block length: none
    return bytes(out)


def check_length(r: Reader, length: int, header: int, total: int) -> None:
    if length < header:
        raise r.fail(f"record length {length} is below the {header}-byte header")
    if length > total:
        raise r.fail(f"record length {length} but only {total} bytes given (truncated)")
    if length < total:
        raise r.fail(f"{total - length} bytes after the record's declared end")


def read_geometry_and_views(r: Reader, length: int, angle_unit: float,
                            angle_codes: int) -> MinutiaeTemplate:
    """From the capture-equipment field to the record's end (both formats alike)."""
    r.u16("capture equipment")
    width, height = r.u16("image width"), r.u16("image height")
    res_x, res_y = r.u16("x resolution"), r.u16("y resolution")
    if not (0 < width < 1 << 14 and 0 < height < 1 << 14):
        raise r.fail(f"image size {width}x{height}: each side must be 1..16383")
    if not (res_x and res_y):
        raise r.fail("resolution must not be 0 (pixels per centimetre; 197 for 500 ppi)")
    count = r.u8("number of finger views")
    r.u8("reserved")
    views = tuple(read_view(r, width, height, angle_unit, angle_codes) for _ in range(count))
    if r.pos != length:
        raise r.fail(f"{length - r.pos} bytes left after the last finger view")
    return MinutiaeTemplate(width, height, views, res_x, res_y)


def write_geometry_and_views(t: MinutiaeTemplate, angle_unit: float,
                             angle_codes: int) -> bytes:
    """Capture equipment (unknown), image size, resolution, view count, and the views."""
    if len(t.views) > 255:
        raise ValueError("at most 255 finger views")
    head = ((0).to_bytes(2, "big") + t.width.to_bytes(2, "big") + t.height.to_bytes(2, "big")
            + t.resolution_x.to_bytes(2, "big") + t.resolution_y.to_bytes(2, "big")
            + bytes([len(t.views), 0]))
    return head + b"".join(write_view(v, angle_unit, angle_codes) for v in t.views)
