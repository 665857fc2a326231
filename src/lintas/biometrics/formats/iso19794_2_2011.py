"""ISO/IEC 19794-2:2011 finger minutiae record ("FMR\\0", "030\\0").

General header (ISO/IEC 19794-1:2011), 15 bytes: identifier (4), version (4), record
length (4), number of finger representations (2), certification flag (1). Each
representation: its length (4), capture date and time (9; 0xFF.. when unknown), capture
device technology (1), vendor (2) and type (2), quality blocks (count 1, then 5 bytes
each: score, algorithm vendor, algorithm id), certification blocks if flagged (count 1,
then 3 bytes each), finger position (1), representation number (1), x/y resolution in
pixels per cm (2 + 2), impression type (1), image width, height (2 + 2), minutia size << 4
| ridge-ending type (1), minutiae count (1), minutiae (5 bytes, or 6 with quality; the
angle in units of 360/256 degrees), extended data length (2) and data.
"""

from __future__ import annotations

import numpy as np

from lintas.biometrics.formats.common import angle_code
from lintas.biometrics.formats.reader import Reader, TemplateFormatError
from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType

MAGIC = b"FMR\x00030\x00"
GENERAL_HEADER = 15
ANGLE_UNIT, ANGLE_CODES = 360 / 256, 256
QUALITY_NOT_REPORTED, QUALITY_FAILED = 254, 255
UNKNOWN_DATETIME = b"\xff" * 9
# Impression types of the 2011 edition: live/non-live plain and rolled, swipe, and the
# latent and contactless codes it added.
IMPRESSION_TYPES_2011 = frozenset({0, 1, 2, 3, 8, *range(20, 30)})


def read(data: bytes) -> MinutiaeTemplate:
    views, (width, height, res_x, res_y) = _read(data)
    return MinutiaeTemplate(width, height, tuple(
        FingerView(position=position, minutiae=_minutiae(block), quality=quality, view=view,
                   impression=impression)
        for position, view, quality, impression, block in views), res_x, res_y)


def read_minutiae(data: bytes) -> list[tuple[int, np.ndarray]]:
    """Each representation's finger position and minutiae as rows of (x, y, angle in
    degrees), validated exactly as `read` validates them but without building a
    `Minutia` for each: what a 1:N index needs of a stored record."""
    views, _ = _read(data)
    return [(position, np.column_stack([block[:, 1], block[:, 2],
                                        (block[:, 3] * ANGLE_UNIT) % 360]).astype(np.float64))
            for position, _, _, _, block in views]


_View = tuple[int, int, int, int, np.ndarray]  # position, view, quality, impression, minutiae


def _read(data: bytes) -> tuple[list[_View], tuple[int, int, int, int]]:
    r = Reader(data)
    if r.take(8, "identifier and version") != MAGIC:
        raise TemplateFormatError("not an ISO/IEC 19794-2:2011 record", 0)
    length = r.u32("record length")
    if length > len(data):
        raise r.fail(f"record length {length} but only {len(data)} bytes given (truncated)")
    if length < len(data):
        raise r.fail(f"{len(data) - length} bytes after the record's declared end")
    count = r.u16("number of finger representations")
    certified = r.u8("certification flag")
    if certified > 1:
        raise r.fail(f"certification flag {certified} is not 0 or 1")
    if count == 0:
        raise r.fail("a record holds at least one finger representation")
    geometry: tuple[int, int, int, int] | None = None
    views = []
    for _ in range(count):
        view, geo = _read_representation(r, bool(certified))
        if geometry is not None and geo != geometry:
            raise r.fail("representations with different image sizes or resolutions are "
                         "not supported in one record")
        geometry = geo
        views.append(view)
    if r.pos != length:
        raise r.fail(f"{length - r.pos} bytes left after the last representation")
    assert geometry is not None
    return views, geometry


def _read_representation(r: Reader, certified: bool
                         ) -> tuple[_View, tuple[int, int, int, int]]:
    start = r.pos
    length = r.u32("representation length")
    end = start + length
    if end > r.end or length < 4:
        raise r.fail(f"representation length {length} runs past the record")
    rep = Reader(r.data, end)
    rep.pos = r.pos
    rep.take(9, "capture date and time")
    rep.u8("capture device technology")
    rep.u16("capture device vendor")
    rep.u16("capture device type")
    quality = 0
    for i in range(rep.u8("number of quality blocks")):
        score = rep.u8("quality score")
        rep.u16("quality algorithm vendor")
        rep.u16("quality algorithm")
        if score > 100 and score != QUALITY_FAILED:
            raise rep.fail(f"quality score {score} above 100")
        if i == 0 and score <= 100:
            quality = score
    if certified:
        rep.take(3 * rep.u8("number of certification blocks"), "certification blocks")
    position = rep.u8("finger position")
    if position > 10:
        raise rep.fail(f"finger position {position} is not 0..10")
    number = rep.u8("representation number")
    res_x, res_y = rep.u16("x resolution"), rep.u16("y resolution")
    if not (res_x and res_y):
        raise rep.fail("resolution must not be 0 (pixels per centimetre; 197 for 500 ppi)")
    impression = rep.u8("impression type")
    if impression not in IMPRESSION_TYPES_2011:
        raise rep.fail(f"impression type {impression} is not a 2011 impression code")
    width, height = rep.u16("image width"), rep.u16("image height")
    if not (0 < width < 1 << 14 and 0 < height < 1 << 14):
        raise rep.fail(f"image size {width}x{height}: each side must be 1..16383")
    packed = rep.u8("minutia field length and ridge-ending type")
    size, ending = packed >> 4, packed & 0x0F
    if size not in (5, 6):
        raise rep.fail(f"minutia field length {size} is not 5 or 6")
    if ending > 1:
        raise rep.fail(f"ridge-ending type {ending} is not 0 or 1")
    block = _minutiae_block(rep, width, height, size, rep.u8("number of minutiae"))
    rep.take(rep.u16("extended data block length"), "extended data block")
    if rep.pos != end:
        raise rep.fail(f"{end - rep.pos} bytes left at the end of the representation")
    r.pos = end
    return (position, number & 0x0F, quality, impression, block), (width, height, res_x, res_y)


def _minutiae_block(r: Reader, width: int, height: int, size: int, count: int
                    ) -> np.ndarray:
    """The minutiae as rows of (type, x, y, angle code, quality), every field checked.

    Decoded as one array rather than minutia by minutia: a node reads every stored
    template when it builds its 1:N index at start-up. Measured on 5,000 stored records
    of about 70 minutiae: `read` 211 -> 164 us a record, `read_minutiae` (no `Minutia`
    objects) 37 us, so 100,000 records take about 4 s instead of 21 s."""
    start = r.pos
    raw = np.frombuffer(r.take(count * size, f"{count} minutiae of {size} bytes"),
                        dtype=np.uint8).reshape(count, size).astype(np.int64)
    block = np.empty((count, 5), dtype=np.int64)
    block[:, 0] = raw[:, 0] >> 6
    block[:, 1] = ((raw[:, 0] & 0x3F) << 8) | raw[:, 1]
    block[:, 2] = ((raw[:, 2] & 0x3F) << 8) | raw[:, 3]  # the top two bits are reserved
    block[:, 3] = raw[:, 4]
    block[:, 4] = raw[:, 5] if size == 6 else QUALITY_NOT_REPORTED
    absent = (block[:, 4] == QUALITY_NOT_REPORTED) | (
        (block[:, 4] == QUALITY_FAILED) if size == 6 else False)
    problems = (
        (block[:, 0] == 3, lambda m: "type code 3 is reserved"),
        ((block[:, 1] >= width) | (block[:, 2] >= height),
         lambda m: f"({m[1]}, {m[2]}) outside the {width}x{height} image"),
        (block[:, 3] >= ANGLE_CODES, lambda m: f"angle code {m[3]} above {ANGLE_CODES - 1}"),
        ((block[:, 4] > 100) & ~absent, lambda m: f"quality {m[4]} above 100"),
    )
    failing = np.zeros(count, dtype=bool)
    for rows, _ in problems:
        failing |= rows
    if failing.any():
        i = int(np.argmax(failing))  # the first bad minutia, and its first bad field
        for rows, say in problems:
            if rows[i]:
                at = start + i * size
                raise TemplateFormatError(f"minutia at byte {at}: {say(block[i].tolist())}",
                                          at + size)
    block[absent, 4] = 0
    return block


def _minutiae(block: np.ndarray) -> tuple[Minutia, ...]:
    return tuple(Minutia(x=x, y=y, angle=(code * ANGLE_UNIT) % 360, type=MinutiaType(kind),
                         quality=quality or None)
                 for kind, x, y, code, quality in block.tolist())


def write(t: MinutiaeTemplate) -> bytes:
    if not t.views:
        raise ValueError("an ISO/IEC 19794-2:2011 record holds at least one representation")
    reps = b"".join(_write_representation(t, v) for v in t.views)
    length = GENERAL_HEADER + len(reps)
    return MAGIC + length.to_bytes(4, "big") + len(t.views).to_bytes(2, "big") + b"\x00" + reps


def _write_representation(t: MinutiaeTemplate, v: FingerView) -> bytes:
    with_quality = any(m.quality is not None for m in v.minutiae)
    body = bytearray(UNKNOWN_DATETIME)
    body += bytes([0]) + (0).to_bytes(2, "big") + (0).to_bytes(2, "big")  # device unknown
    if v.quality:
        # One quality block; vendor and algorithm 0 (unreported), as NFIQ-style scores
        # come with their own identifiers once quality assessment is added.
        body += bytes([1, v.quality]) + (0).to_bytes(4, "big")
    else:
        body += bytes([0])
    body += bytes([v.position, v.view])
    body += t.resolution_x.to_bytes(2, "big") + t.resolution_y.to_bytes(2, "big")
    body += bytes([v.impression])
    body += t.width.to_bytes(2, "big") + t.height.to_bytes(2, "big")
    body += bytes([((6 if with_quality else 5) << 4) | 1, len(v.minutiae)])  # ridge ends
    for m in v.minutiae:
        body += ((int(m.type) << 14) | m.x).to_bytes(2, "big") + m.y.to_bytes(2, "big")
        body += bytes([angle_code(m.angle, ANGLE_UNIT, ANGLE_CODES)])
        if with_quality:
            body += bytes([QUALITY_NOT_REPORTED if m.quality is None else m.quality])
    body += (0).to_bytes(2, "big")
    return (4 + len(body)).to_bytes(4, "big") + bytes(body)
