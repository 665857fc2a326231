"""ANSI/NIST-ITL 1-2011 transactions (traditional encoding, version "0500"), read and
written with `nistitl`.

    write_transaction(tx)      -> bytes
    read_transaction(data)     -> Transaction       (AnsiNistError for anything malformed)
    fingers_to_template(tx)    -> MinutiaeTemplate  (all fingers' Type-9 minutiae, one record)
    finger_templates(tx)       -> one MinutiaeTemplate per finger with minutiae
    fingers_from_template(t)   -> Fingers carrying the views of an ISO/ANSI 378 template

A transaction holds one Type-1 record, one Type-2 record of user-defined text fields and
1-10 fingers. A finger has a position (FGP 1-10), an impression type, and an image (one
Type-14 or Type-4 record), minutiae (one Type-9 record), or both; the records of one
finger share their IDC (1 for the first finger, 2 for the second, ...).

Records and fields written:

- Type-1: 1.002 VER "0500", 1.003 CNT, 1.004 TOT, 1.005 DAT, 1.007 DAI, 1.008 ORI,
  1.009 TCN, 1.011 NSR and 1.012 NTR ("19.69" pixels/mm when a Type-4 record is present,
  else "00.00"), and 1.015 DCS = "3" (UTF-8) when some Type-2 text is not ASCII: the
  default character set is 7-bit ASCII, and Type-1 itself is always ASCII.
- Type-2: 2.002 IDC 0 and the user's fields (2.003-2.9999), each one plain text value.
- Type-14: 14.003 IMP, 14.004 SRC (= ORI), 14.005 FCD (= DAT), 14.006 HLL, 14.007 VLL,
  14.008 SLC 1 (pixels per inch), 14.009 THPS and 14.010 TVPS 500, 14.011 CGA "NONE" or
  "WSQ20", 14.012 BPX 8, 14.013 FGP, 14.999 DATA.
- Type-4 (binary, fixed 500 ppi): IMP, FGP (position then five 255s), ISR 0, HLL, VLL,
  GCA 0 (none) or 1 (WSQ), then the image.
- Type-9: 9.003 IMP, 9.004 FMT "U", and the INCITS 378 block of fields 9.126-9.150:
  9.126 CBI (27, 513, 0), 9.127 CEI (0, 0), 9.128 HLL, 9.129 VLL, 9.130 SLC 2, 9.131
  THPS and 9.132 TVPS (pixels per cm, as MinutiaeTemplate.resolution_x/y), 9.133 FVW,
  9.134 FGP, 9.135 FQD, 9.136 NOM, and 9.137 FMD: one subfield per minutia with items
  index, x, y (pixels, origin top-left), angle (MAV, units of 2 degrees, 0-179, counter-
  clockwise from the x axis), type (0 other, 1 ending, 2 bifurcation), quality (1-100;
  0 = not reported).

Quantisation: positions are exact pixels; an angle is stored to the nearest 2 degrees
(at most 1 degree off; an angle on the 2-degree grid comes back exactly); a minutia
quality of 0 or None is written as 0 and read as None. Images are written at 500 ppi:
raw pixels come back exactly, WSQ approximately. Reading accepts any declared image
resolution (Type-14 SLC 1 or 2, Type-4 ISR with 1.011 NSR) and resamples to 500 ppi
through `lintas.biometrics.images`.

Reading validates before it trusts: the record framing (declared lengths against the
bytes, the record list in 1.003 CNT, at most 22 records, 300 fields a record and 64 MiB,
duplicate or misplaced field tags) is checked here, because `nistitl` silently keeps the
last of two equal tags, cuts a Type-14 record short where a text field holds "999:", takes
quadratic time in the number of fields, and fails with TypeError, KeyError or ValueError
on malformed input; every problem is an `AnsiNistError` (a TemplateFormatError, hence a
ValueError) naming the record and the field. WSQ images are decoded in a child process:
the NBIS decoder inside `wsq` crashes the interpreter (SIGSEGV) on some corrupt data,
measured here.

Not supported (refused with a clear error when read): record types other than 1, 2, 4, 9
and 14; Type-2 fields with subfields or items; several finger positions in one image
record (slaps, FGP 13-15); finger position 0 (unknown); impression types other than
0-3 and 8; compressions other than none and WSQ; Type-9 records without the INCITS 378
block; versions other than 0500; character sets other than ASCII and UTF-8.

Licences: `nistitl` (0.6, IDEMIA) is CeCILL-C, like `wsq`: a weak, file-level copyleft
close to the LGPL. It is used unmodified as a separate, replaceable package of the
`biometrics` extra, never copied into this repository.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nistitl
import numpy as np
from PIL import Image

from lintas.biometrics.formats.reader import TemplateFormatError
from lintas.biometrics.images import (
    MAX_SIDE,
    MIN_SIDE,
    TARGET_PPI,
    FingerImage,
    ImageError,
    from_array,
    load_image,
)
from lintas.biometrics.images import decode_wsq_isolated as _decode_wsq_isolated
from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType

VERSION = "0500"
MAX_FINGERS = 10
MAX_RECORDS = 2 + 2 * MAX_FINGERS  # Type-1, Type-2, and an image and a Type-9 per finger
# nistitl adds a field after comparing it with every field already in the record, so
# 10,000 fields take it seconds: a bound far above any real record keeps that cheap.
MAX_FIELDS = 300
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})  # live/non-live plain/rolled, swipe
ANGLE_UNIT = 2.0  # degrees per 9.137 MAV unit

_PPMM_500_PPI = "19.69"  # 1.011 NSR / 1.012 NTR of a 500 ppi Type-4 image
_TYPE4_HEADER = 18  # LEN 4, IDC 1, IMP 1, FGP 6, ISR 1, HLL 2, VLL 2, GCA 1
_CBEFF_INCITS_M1, _CBEFF_FMR_378 = "27", "513"  # 9.126 owner 0x001B, type 0x0201
_UTF8_INDEX = 3  # 1.015 character encoding index of UTF-8 (0 is 7-bit ASCII)

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"


class AnsiNistError(TemplateFormatError):
    """A transaction that does not follow ANSI/NIST-ITL 1-2011 or that this reader does
    not support. `record` is the 1-based record index, `field` like "14.013"."""

    def __init__(self, message: str, offset: int = 0, *, record: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, offset)
        self.record = record
        self.field = field


class ImageRecord(enum.IntEnum):
    """The record type an image travels in."""

    TYPE_4 = 4  # binary, fixed 500 ppi (legacy; the standard discourages it)
    TYPE_14 = 14  # tagged, variable resolution


class Compression(enum.Enum):
    NONE = "NONE"  # 8-bit grey, row by row
    WSQ = "WSQ20"  # FBI Wavelet Scalar Quantization (lossy)


_TYPE4_GCA = {Compression.NONE: 0, Compression.WSQ: 1}
_TYPE14_CGA = {"NONE": Compression.NONE, "WSQ20": Compression.WSQ, "WSQ": Compression.WSQ}


@dataclass(frozen=True, kw_only=True, eq=False)
class Finger:
    """One impression of one finger: its image, its minutiae, or both.

    `minutiae` holds exactly one view, of this position and impression type; its width,
    height and resolution are the Type-9 record's own (they need not be the image's).
    """

    position: int  # FGP: 1 right thumb ... 5 right little, 6 left thumb ... 10 left little
    impression: int = 0  # IMP: 0 live-scan plain, 1 live-scan rolled, 2, 3 non-live, 8 swipe
    image: FingerImage | None = None  # at 500 ppi
    minutiae: MinutiaeTemplate | None = None
    record: ImageRecord = ImageRecord.TYPE_14
    compression: Compression = Compression.NONE

    def __post_init__(self) -> None:
        if isinstance(self.position, bool) or not isinstance(self.position, int) \
                or not 1 <= self.position <= 10:
            raise ValueError(f"finger position (FGP) {self.position!r} is not 1..10")
        if self.impression not in IMPRESSION_TYPES:
            raise ValueError(f"impression type {self.impression!r} is not one of "
                             f"{sorted(IMPRESSION_TYPES)}")
        object.__setattr__(self, "record", ImageRecord(self.record))
        object.__setattr__(self, "compression", Compression(self.compression))
        if self.image is None and self.minutiae is None:
            raise ValueError(f"finger {self.position}: an image, minutiae, or both")
        if self.image is not None:
            if not isinstance(self.image, FingerImage):
                raise ValueError("image: a FingerImage is required")
            px = self.image.pixels
            if not (isinstance(px, np.ndarray) and px.ndim == 2 and px.dtype == np.uint8):
                raise ValueError("image pixels: a 2-D uint8 array is required")
            if not (MIN_SIDE <= px.shape[0] <= MAX_SIDE and MIN_SIDE <= px.shape[1] <= MAX_SIDE):
                raise ValueError(f"image size {px.shape[1]}x{px.shape[0]}: each side must be "
                                 f"{MIN_SIDE}..{MAX_SIDE} pixels")
        if self.minutiae is not None:
            if not isinstance(self.minutiae, MinutiaeTemplate):
                raise ValueError("minutiae: a MinutiaeTemplate is required")
            views = self.minutiae.views
            if len(views) != 1:
                raise ValueError(f"finger {self.position}: the minutiae template must hold "
                                 f"exactly one view, not {len(views)}")
            if (views[0].position, views[0].impression) != (self.position, self.impression):
                raise ValueError(
                    f"finger {self.position}, impression {self.impression}: the minutiae "
                    f"view is of position {views[0].position}, impression "
                    f"{views[0].impression}")

    @property
    def view(self) -> FingerView | None:
        return self.minutiae.views[0] if self.minutiae is not None else None


@dataclass(frozen=True, kw_only=True, eq=False)
class Transaction:
    """Type-1 information, the Type-2 text fields ("2.003" -> text) and the fingers."""

    tot: str  # type of transaction, e.g. "CAR"
    dat: dt.date
    dai: str  # destination agency
    ori: str  # originating agency (also written as 14.004 SRC)
    tcn: str  # transaction control number
    fingers: tuple[Finger, ...]
    type2: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value, longest in (("tot", self.tot, 16), ("dai", self.dai, 64),
                                     ("ori", self.ori, 64), ("tcn", self.tcn, 64)):
            _check_type1_text(name, value, longest)
        # ORI is repeated in 14.004 SRC, and nistitl finds a Type-14 record's image field
        # by searching for "999:": a colon there could make it cut the record wrongly.
        if ":" in self.ori:
            raise ValueError("ori: ':' is not allowed (it is repeated in 14.004 SRC)")
        if not isinstance(self.dat, dt.date):
            raise ValueError("dat: a datetime.date is required")
        fingers = tuple(self.fingers)
        if not 1 <= len(fingers) <= MAX_FINGERS:
            raise ValueError(f"{len(fingers)} fingers: a transaction holds 1..{MAX_FINGERS}")
        seen: set[tuple[int, int]] = set()
        for finger in fingers:
            if not isinstance(finger, Finger):
                raise ValueError("fingers: Finger values are required")
            if (finger.position, finger.impression) in seen:
                raise ValueError(f"finger position {finger.position} appears twice with "
                                 f"impression type {finger.impression}")
            seen.add((finger.position, finger.impression))
        object.__setattr__(self, "fingers", fingers)
        type2 = dict(self.type2)
        if len(type2) > MAX_FIELDS - 2:
            raise ValueError(f"{len(type2)} Type-2 fields: at most {MAX_FIELDS - 2} are read")
        for tag, text in type2.items():
            _check_type2(tag, text)
        object.__setattr__(self, "type2", type2)


def _check_type1_text(name: str, value: object, longest: int) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise ValueError(f"{name}: 1..{longest} characters are required")
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{name}: {value!r} is not printable 7-bit ASCII (Type-1 is ASCII)")


_TYPE2_KEY = re.compile(r"2\.([0-9]{3,4})")


def _check_type2(key: object, value: object) -> None:
    match = _TYPE2_KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None or f"2.{int(match[1]):03d}" != key or int(match[1]) < 3:
        raise ValueError(f"Type-2 field {key!r}: a tag '2.003'..'2.9999' is required "
                         "(2.001 and 2.002 are the length and IDC)")
    if not isinstance(value, str) or not value:
        raise ValueError(f"Type-2 field {key}: a non-empty text is required")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"Type-2 field {key}: control characters (separators) are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"Type-2 field {key}: not encodable as UTF-8") from None


# ---------------------------------------------------------------------------- writing


def write_transaction(tx: Transaction) -> bytes:
    """The transaction in the traditional (binary) encoding of ANSI/NIST-ITL 1-2011."""
    msg = nistitl.Message()
    t1 = msg[0]
    t1.VER = VERSION
    t1.TOT = tx.tot
    t1.DAT = tx.dat.strftime("%Y%m%d")
    t1.DAI = tx.dai
    t1.ORI = tx.ori
    t1.TCN = tx.tcn
    has_type4 = any(f.image is not None and f.record is ImageRecord.TYPE_4 for f in tx.fingers)
    t1.NSR = t1.NTR = _PPMM_500_PPI if has_type4 else "00.00"
    utf8 = not all(value.isascii() for value in tx.type2.values())
    if utf8:
        t1 += nistitl.Field(1, 15, [[str(_UTF8_INDEX), "UTF-8"]])

    t2 = nistitl.AsciiRecord(2)
    t2.IDC = 0
    for key in sorted(tx.type2, key=lambda k: int(k[2:])):
        # nistitl writes text as Latin-1: hand it the UTF-8 bytes as Latin-1 characters.
        t2 += nistitl.Field(2, int(key[2:]), tx.type2[key].encode("utf-8").decode("latin-1"))
    msg += t2

    numbered = list(enumerate(tx.fingers, start=1))
    for idc, finger in numbered:
        if finger.image is not None and finger.record is ImageRecord.TYPE_4:
            msg += _type4(idc, finger, finger.image)
    for idc, finger in numbered:
        if finger.minutiae is not None:
            msg += _type9(idc, finger, finger.minutiae)
    for idc, finger in numbered:
        if finger.image is not None and finger.record is ImageRecord.TYPE_14:
            msg += _type14(idc, finger, finger.image, tx)
    return bytes(msg.NIST)


def _image_bytes(image: FingerImage, compression: Compression) -> bytes:
    if compression is Compression.NONE:
        return image.pixels.tobytes()
    import wsq  # noqa: F401  (registers the WSQ codec with Pillow)

    out = io.BytesIO()
    Image.fromarray(image.pixels, mode="L").save(out, format="WSQ")
    return out.getvalue()


def _type4(idc: int, finger: Finger, image: FingerImage) -> Any:
    record = nistitl.BinaryRecord(4)
    record.IDC = idc
    record.value = (bytes([finger.impression, finger.position, 255, 255, 255, 255, 255, 0])
                    + image.width.to_bytes(2, "big") + image.height.to_bytes(2, "big")
                    + bytes([_TYPE4_GCA[finger.compression]])
                    + _image_bytes(image, finger.compression))
    return record


def _type14(idc: int, finger: Finger, image: FingerImage, tx: Transaction) -> Any:
    record = nistitl.AsciiRecord(14)
    record.IDC = idc
    for tag, value in ((3, finger.impression), (4, tx.ori), (5, tx.dat.strftime("%Y%m%d")),
                       (6, image.width), (7, image.height), (8, 1), (9, round(TARGET_PPI)),
                       (10, round(TARGET_PPI)), (11, finger.compression.value), (12, 8),
                       (13, finger.position)):
        record += nistitl.Field(14, tag, str(value))
    record += nistitl.BinaryField(14, 999, _image_bytes(image, finger.compression))
    return record


def _type9(idc: int, finger: Finger, template: MinutiaeTemplate) -> Any:
    view = template.views[0]
    record = nistitl.AsciiRecord(9)
    record.IDC = idc
    for tag, value in ((3, finger.impression), (4, "U"), (128, template.width),
                       (129, template.height), (130, 2), (131, template.resolution_x),
                       (132, template.resolution_y), (133, view.view), (134, view.position),
                       (135, view.quality), (136, len(view.minutiae))):
        record += nistitl.Field(9, tag, str(value))
    record += nistitl.Field(9, 126, [[_CBEFF_INCITS_M1, _CBEFF_FMR_378, "0"]])
    record += nistitl.Field(9, 127, [["0", "0"]])
    if view.minutiae:
        record += nistitl.Field(9, 137, [
            [str(i), str(m.x), str(m.y), str(round(m.angle / ANGLE_UNIT) % 180),
             str(int(m.type)), str(m.quality or 0)]
            for i, m in enumerate(view.minutiae, start=1)])
    return record


# ---------------------------------------------------------------------------- framing


@dataclass(frozen=True)
class _Span:
    """Where one record lies, as 1.003 CNT and the declared lengths say."""

    index: int  # 1-based, in transaction order
    type: int
    idc: int
    offset: int
    length: int
    fields: dict[int, tuple[int, int]] = field(default_factory=dict)  # tag -> value bytes

    def where(self, tag: int | None = None) -> str:
        text = f"record {self.index} (Type-{self.type}"
        text += ")" if self.type == 1 else f", IDC {self.idc})"
        return text if tag is None else f"{text}, field {self.type}.{tag:03d}"

    def error(self, message: str, tag: int | None = None) -> AnsiNistError:
        return AnsiNistError(f"{self.where(tag)}: {message}", self.offset, record=self.index,
                             field=None if tag is None else f"{self.type}.{tag:03d}")


_HEADER = re.compile(rb"([0-9]{1,3})\.([0-9]{1,4}):([0-9]{1,10})\x1d")
_TAG = re.compile(rb"([0-9]{1,3})\.([0-9]{1,4}):")
_DIGITS = re.compile(rb"[0-9]{1,9}")


def _frame(data: bytes) -> list[_Span]:
    """Check the framing nistitl relies on: every record where 1.003 CNT says, of the
    length it declares, ending in FS, with well-formed, distinct field tags."""
    if not data:
        raise AnsiNistError("empty input: not an ANSI/NIST-ITL transaction", 0)
    if len(data) > MAX_TRANSACTION_BYTES:
        raise AnsiNistError(f"{len(data)} bytes: a transaction here is at most "
                            f"{MAX_TRANSACTION_BYTES} bytes", 0)
    first = _Span(1, 1, 0, 0, _ascii_length(data, 0, 1, 1))
    first.fields.update(_fields(data, first))
    cnt = first.fields.get(3)
    if cnt is None:
        raise first.error("1.003 CNT (the list of records) is missing", 3)
    listed = _parse_cnt(data[cnt[0]:cnt[1]], first)
    spans, offset = [first], first.length
    for index, (rtype, idc) in enumerate(listed, start=2):
        if rtype == 4:
            if offset + 5 > len(data):
                raise AnsiNistError(f"record {index} (Type-4): the data ends before its "
                                    "length and IDC (truncated)", offset, record=index)
            length = int.from_bytes(data[offset:offset + 4], "big")
            span = _Span(index, 4, idc, offset, length)
            if length < _TYPE4_HEADER:
                raise span.error(f"declared length {length} is below the "
                                 f"{_TYPE4_HEADER}-byte header")
            if offset + length > len(data):
                raise span.error(f"declares {length} bytes but only {len(data) - offset} "
                                 "remain (truncated)")
            if data[offset + 4] != idc:
                raise span.error(f"its IDC byte is {data[offset + 4]}, but 1.003 CNT lists "
                                 f"IDC {idc}")
        elif rtype in (2, 9, 14):
            span = _Span(index, rtype, idc, offset, _ascii_length(data, offset, rtype, index))
            span.fields.update(_fields(data, span))
            idc_field = span.fields.get(2)
            if idc_field is None:
                raise span.error("the IDC field is missing", 2)
            value = data[idc_field[0]:idc_field[1]]
            if not _DIGITS.fullmatch(value) or int(value) != idc:
                raise span.error(f"IDC {value!r} differs from the IDC {idc} listed in "
                                 "1.003 CNT", 2)
        else:
            raise AnsiNistError(
                f"record {index} is of Type-{rtype}: only Types 1, 2, 4, 9 and 14 are "
                "supported", offset, record=index)
        spans.append(span)
        offset += span.length
    if offset != len(data):
        raise AnsiNistError(f"{len(data) - offset} bytes after the last record listed in "
                            "1.003 CNT", offset)
    return spans


def _ascii_length(data: bytes, offset: int, rtype: int, index: int) -> int:
    match = _HEADER.match(data, offset)
    if match is None or int(match[1]) != rtype or int(match[2]) != 1:
        kind = "the transaction" if index == 1 else f"record {index}"
        raise AnsiNistError(f"{kind} does not begin with a '{rtype}.001:' length field "
                            f"(Type-{rtype} expected)", offset, record=index,
                            field=f"{rtype}.001")
    length = int(match[3])
    where = f"record {index} (Type-{rtype})"
    if length < match.end() - offset + 1:
        raise AnsiNistError(f"{where}: declared length {length} is shorter than its header",
                            offset, record=index, field=f"{rtype}.001")
    if offset + length > len(data):
        raise AnsiNistError(f"{where}: declares {length} bytes but only "
                            f"{len(data) - offset} remain (truncated)", offset,
                            record=index, field=f"{rtype}.001")
    if data[offset + length - 1:offset + length] != FS:
        raise AnsiNistError(f"{where}: no FS separator at its declared end (byte "
                            f"{offset + length - 1})", offset, record=index,
                            field=f"{rtype}.001")
    return length


def _fields(data: bytes, span: _Span) -> dict[int, tuple[int, int]]:
    """Tag -> (start, end) of its value. Only a Type-14 image (14.999) may hold any byte."""
    end = span.offset + span.length - 1
    found: dict[int, tuple[int, int]] = {}
    pos = span.offset
    while pos < end:
        match = _TAG.match(data, pos, end)
        if match is None:
            raise span.error(f"a field tag like '{span.type}.003:' was expected at byte {pos}")
        rtype, tag = int(match[1]), int(match[2])
        if rtype != span.type:
            raise span.error(f"field {rtype}.{tag:03d} belongs to another record type")
        if tag in found:
            raise span.error("the field appears twice", tag)
        if len(found) == MAX_FIELDS:
            raise span.error(f"more than {MAX_FIELDS} fields in one record")
        start = match.end()
        if span.type == 14 and tag == 999:
            stop = end
        else:
            stop = data.find(GS, start, end)
            stop = end if stop < 0 else stop
            if any(data.find(sep, start, stop) >= 0 for sep in (FS, b"\x02", b"\x03")):
                raise span.error("the field holds a reserved control character", tag)
        found[tag] = (start, stop)
        pos = stop + 1
    tags = list(found)
    expected = [1] if span.type == 1 else [1, 2]
    if tags[:len(expected)] != expected:
        raise span.error(f"the record must begin with field(s) "
                         f"{', '.join(f'{span.type}.{t:03d}' for t in expected)}")
    if span.type == 14 and 999 in found and tags[-1] != 999:
        raise span.error("the image field must be the last field", 999)
    return found


def _parse_cnt(value: bytes, span: _Span) -> list[tuple[int, int]]:
    subfields = [sf.split(US) for sf in value.split(RS)]
    if not all(len(items) == 2 and all(_DIGITS.fullmatch(i) for i in items)
               for items in subfields):
        raise span.error("each subfield must be two numbers (record type, IDC)", 3)
    pairs = [(int(a), int(b)) for a, b in subfields]
    if pairs[0][0] != 1:
        raise span.error("the first subfield must be '1' and the number of other records", 3)
    if pairs[0][1] != len(pairs) - 1:
        raise span.error(f"says {pairs[0][1]} records follow but lists {len(pairs) - 1}", 3)
    if len(pairs) > MAX_RECORDS:
        raise span.error(f"{len(pairs)} records: at most {MAX_RECORDS} (Type-1, Type-2, "
                         f"an image and a Type-9 for each of {MAX_FINGERS} fingers)", 3)
    if any(rtype == 1 for rtype, _ in pairs[1:]):
        raise span.error("only one Type-1 record is allowed", 3)
    return pairs[1:]


# ---------------------------------------------------------------------------- reading


def read_transaction(data: bytes) -> Transaction:
    """Parse and validate a transaction; AnsiNistError names what is wrong and where."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AnsiNistError("a transaction is bytes", 0)
    data = bytes(data)
    spans = _frame(data)
    msg = nistitl.Message()
    try:
        msg.parse(data)
    except Exception as exc:  # nistitl raises NistException, TypeError, KeyError, ...
        raise AnsiNistError(f"nistitl cannot parse the transaction: {exc}", 0) from None
    records = list(msg)
    if [r.type for r in records] != [s.type for s in spans]:
        raise AnsiNistError("nistitl found other records than 1.003 CNT lists", 0)
    for span, record in zip(spans, records, strict=True):
        # nistitl finds a Type-14 image by searching for "999:", so a text field holding
        # those characters makes it cut the record there and drop fields without a word.
        if span.type != 4 and ({f.tag for f in record._fields} != span.fields.keys() or (
                span.type == 14 and 999 in span.fields
                and record[999].value != data[slice(*span.fields[999])])):
            raise span.error("nistitl misreads this record (does a text field hold '999:'?)")
    return _Reader(spans, records).transaction()


class _Reader:
    def __init__(self, spans: list[_Span], records: list[Any]) -> None:
        self.spans = spans
        self.records = records
        self.nsr: str | None = None  # 1.011, the resolution a Type-4 ISR of 1 refers to

    def transaction(self) -> Transaction:
        span, t1 = self.spans[0], self.records[0]
        version = self.text(span, t1, 2)
        if version != VERSION:
            raise span.error(f"version {version!r}: only ANSI/NIST-ITL 1-2011 ({VERSION}) "
                             "is supported", 2)
        tot, dai, ori, tcn = (self.text(span, t1, tag) for tag in (4, 7, 8, 9))
        dat = self.date(span, t1, 5)
        utf8 = self.utf8(span, t1)
        self.nsr = self.optional_text(span, t1, 11)

        type2: dict[str, str] | None = None
        images: dict[int, tuple[_Span, _ImageContent]] = {}
        minutiae: dict[int, tuple[_Span, int, MinutiaeTemplate]] = {}
        for span, record in zip(self.spans[1:], self.records[1:], strict=True):
            if span.type == 2:
                if type2 is not None:
                    raise span.error("a second Type-2 record: one is supported")
                type2 = self.type2(span, record, utf8)
            elif span.type == 9:
                if span.idc in minutiae:
                    raise span.error("a second Type-9 record with this IDC")
                minutiae[span.idc] = (span, *self.type9(span, record))
            else:
                if span.idc in images:
                    raise span.error("a second image record with this IDC")
                images[span.idc] = (span, self.image(span, record))
        self.decode_wsq(images)
        fingers = tuple(self.finger(images.get(idc), minutiae.get(idc))
                        for idc in sorted(images.keys() | minutiae.keys()))
        if not fingers:
            raise self.spans[0].error("no finger: no Type-4, Type-9 or Type-14 record")
        return self.make(self.spans[0], Transaction, tot=tot, dat=dat, dai=dai, ori=ori,
                         tcn=tcn, fingers=fingers, type2=type2 or {})

    def finger(self, image: tuple[_Span, _ImageContent] | None,
               minutiae: tuple[_Span, int, MinutiaeTemplate] | None) -> Finger:
        """The records of one IDC: an image record, a Type-9 record, or both."""
        if image is None:
            assert minutiae is not None
            span, impression, template = minutiae
            return self.make(span, Finger, position=template.views[0].position,
                             impression=impression, minutiae=template)
        span, content = image
        if minutiae is not None:
            m_span, impression, template = minutiae
            if template.views[0].position != content.position:
                raise m_span.error(f"finger position {template.views[0].position} differs "
                                   f"from the image record's {content.position}", 134)
            if impression != content.impression:
                raise m_span.error(f"impression type {impression} differs from the image "
                                   f"record's {content.impression}", 3)
        return self.make(span, Finger, position=content.position,
                         impression=content.impression, image=content.image,
                         record=content.record, compression=content.compression,
                         minutiae=None if minutiae is None else minutiae[2])

    # -- Type-1 and Type-2

    @staticmethod
    def optional_text(span: _Span, record: Any, tag: int) -> str | None:
        item = record[tag]
        if item is None:
            return None
        value = item.value
        if not isinstance(value, str):
            raise span.error("a single value is expected, not subfields or items", tag)
        if span.type == 1 and not all(" " <= c <= "~" for c in value):
            raise span.error("Type-1 text must be printable 7-bit ASCII", tag)
        return value

    def text(self, span: _Span, record: Any, tag: int) -> str:
        value = self.optional_text(span, record, tag)
        if not value:
            raise span.error("the mandatory field is missing or empty", tag)
        return value

    def integer(self, span: _Span, record: Any, tag: int, lo: int, hi: int,
                default: int | None = None) -> int:
        value = self.optional_text(span, record, tag)
        if value is None and default is not None:
            return default
        if value is None or not _DIGITS.fullmatch(value.encode("latin-1")):
            raise span.error(f"a number {lo}..{hi} is required, not {value!r}", tag)
        number = int(value)
        if not lo <= number <= hi:
            raise span.error(f"{number} is outside {lo}..{hi}", tag)
        return number

    def date(self, span: _Span, record: Any, tag: int) -> dt.date:
        value = self.text(span, record, tag)
        try:
            if not re.fullmatch(r"[0-9]{8}", value):
                raise ValueError
            return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            raise span.error(f"{value!r} is not a date YYYYMMDD", tag) from None

    @staticmethod
    def utf8(span: _Span, t1: Any) -> bool:
        item = t1[15]
        if item is None:
            return False
        value = item.value
        items = value[0] if isinstance(value, list) and len(value) == 1 else None
        if not (isinstance(items, list) and len(items) in (2, 3)
                and all(isinstance(i, str) for i in items)
                and _DIGITS.fullmatch(items[0].encode("latin-1"))):
            raise span.error("DCS must be one subfield: index, name [, version]", 15)
        index, name = int(items[0]), items[1].upper()
        if (index, name) == (0, "ASCII"):
            return False
        if (index, name.replace("_", "-")) == (_UTF8_INDEX, "UTF-8"):
            return True
        raise span.error(f"character encoding {items[0]} {items[1]!r}: only 0 ASCII and "
                         "3 UTF-8 are supported", 15)

    def type2(self, span: _Span, record: Any, utf8: bool) -> dict[str, str]:
        fields = {}
        for item in record._fields:  # nistitl keeps a record's fields in this list
            if item.tag in (1, 2):
                continue
            value = item.value
            if not isinstance(value, str):
                raise span.error("subfields and items are not supported in Type-2", item.tag)
            raw = value.encode("latin-1")  # nistitl decodes every byte as Latin-1
            try:
                text = raw.decode("utf-8" if utf8 else "ascii")
            except UnicodeDecodeError:
                raise span.error("not valid UTF-8" if utf8 else
                                 "non-ASCII text, but 1.015 DCS does not declare UTF-8",
                                 item.tag) from None
            key = f"2.{item.tag:03d}"
            try:
                _check_type2(key, text)
            except ValueError as exc:
                raise span.error(str(exc), item.tag) from None
            fields[key] = text
        return fields

    # -- images

    def image(self, span: _Span, record: Any) -> _ImageContent:
        declared: float | None
        if span.type == 4:
            value = record.value  # after LEN and IDC; the framing checked its 13-byte header
            impression, position, others = value[0], value[1], value[2:7]
            isr, gca, data = value[7], value[12], value[13:]
            width = int.from_bytes(value[8:10], "big")
            height = int.from_bytes(value[10:12], "big")
            if not 1 <= position <= 10:
                raise span.error(f"finger position (FGP) {position} is not 1..10", 4)
            if any(other not in (0, 255) for other in others):
                raise span.error("several possible finger positions are not supported", 4)
            if isr == 0:
                declared = TARGET_PPI  # the minimum scanning resolution, 19.69 pixels/mm
            elif isr == 1:
                declared = self.native_ppi(span)
            else:
                raise span.error(f"image scanning resolution (ISR) {isr} is not 0 or 1", 5)
            compression = {v: k for k, v in _TYPE4_GCA.items()}.get(gca)
            if compression is None:
                raise span.error(f"compression (GCA) {gca}: only 0 (none) and 1 (WSQ) are "
                                 "supported", 8)
            tags = {"impression": 3, "width": 6, "height": 7, "data": 9}
        else:
            impression = self.integer(span, record, 3, 0, 99)
            position = self.integer(span, record, 13, 1, 10)
            width = self.integer(span, record, 6, 1, 99999)
            height = self.integer(span, record, 7, 1, 99999)
            declared = self.type14_ppi(span, record)
            name = self.text(span, record, 11).upper()
            if name not in _TYPE14_CGA:
                raise span.error(f"compression {name!r}: only NONE and WSQ20 are supported",
                                 11)
            compression = _TYPE14_CGA[name]
            if self.integer(span, record, 12, 1, 99, default=8) != 8:
                raise span.error("only 8 bits per pixel (grey) are supported", 12)
            data = record[999].value if record[999] is not None else None
            if not isinstance(data, bytes) or not data:
                raise span.error("the image data is missing", 999)
            tags = {"impression": 3, "width": 6, "height": 7, "data": 999}
        if impression not in IMPRESSION_TYPES:
            raise span.error(f"impression type {impression} is not one of "
                             f"{sorted(IMPRESSION_TYPES)}", tags["impression"])
        for side, tag in ((width, tags["width"]), (height, tags["height"])):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise span.error(f"image side {side} is outside {MIN_SIDE}..{MAX_SIDE}", tag)
        content = _ImageContent(position=position, impression=impression,
                                record=ImageRecord(span.type), compression=compression,
                                ppi=declared, data_tag=tags["data"])
        if compression is Compression.NONE:
            if len(data) != width * height:
                raise span.error(f"{len(data)} bytes of raw image, but {width}x{height} "
                                 f"needs {width * height}", tags["data"])
            pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width)
            content.image = self.to_image(span, pixels, declared, tags["data"])
        else:
            self.check_wsq_header(span, data, width, height, tags["data"])
            content.wsq = data
        return content

    def native_ppi(self, span: _Span) -> float:
        if self.nsr is None or not re.fullmatch(r"[0-9]{2}\.[0-9]{2}", self.nsr) \
                or float(self.nsr) == 0:
            raise span.error(f"ISR 1 refers to 1.011 NSR, which is {self.nsr!r}, not a "
                             "resolution in pixels/mm like 19.69", 5)
        return float(self.nsr) * 25.4

    def type14_ppi(self, span: _Span, record: Any) -> float | None:
        scale = self.integer(span, record, 8, 0, 2)
        horizontal = self.integer(span, record, 9, 1, 99999)
        vertical = self.integer(span, record, 10, 1, 99999)
        if horizontal != vertical:
            raise span.error(f"pixel scales {horizontal} and {vertical} differ: only square "
                             "pixels are supported", 10)
        if scale == 0:  # only an aspect ratio: the resolution is not known
            return None
        return float(horizontal) if scale == 1 else horizontal * 2.54

    @staticmethod
    def check_wsq_header(span: _Span, data: bytes, width: int, height: int, tag: int) -> None:
        import wsq  # noqa: F401  (registers the WSQ codec with Pillow)

        try:  # the header only: WsqImagePlugin reads it in Python, no native code
            with Image.open(io.BytesIO(data)) as img:
                kind, size = img.format, img.size
        except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, ...
            raise span.error(f"not a readable WSQ image: {exc}", tag) from None
        if kind != "WSQ" or size != (width, height):
            raise span.error(f"the WSQ image is {kind} {size[0]}x{size[1]}, the record "
                             f"declares {width}x{height}", tag)

    def decode_wsq(self, images: dict[int, tuple[_Span, _ImageContent]]) -> None:
        pending = [(span, content) for span, content in images.values()
                   if content.wsq is not None]
        if not pending:
            return
        decoded = _decode_wsq_isolated([content.wsq or b"" for _, content in pending])
        for (span, content), result in zip(pending, decoded, strict=True):
            if isinstance(result, str):
                raise span.error(f"the WSQ image cannot be decoded: {result}", content.data_tag)
            content.image = self.to_image(span, result, content.ppi, content.data_tag)

    @staticmethod
    def to_image(span: _Span, pixels: np.ndarray, ppi: float | None, tag: int) -> FingerImage:
        try:
            if ppi is not None:
                return from_array(pixels, ppi)
            out = io.BytesIO()  # no resolution known: let images say so (ppi_declared)
            Image.fromarray(pixels, mode="L").save(out, format="PNG")
            return load_image(out.getvalue())
        except ImageError as exc:
            raise span.error(str(exc), tag) from None

    # -- minutiae

    def type9(self, span: _Span, record: Any) -> tuple[int, MinutiaeTemplate]:
        impression = self.integer(span, record, 3, 0, 99)
        if record[128] is None:
            raise span.error("the INCITS 378 fields 9.126-9.150 are missing: only that "
                             "feature set is supported", 128)
        width = self.integer(span, record, 128, 1, 16383)
        height = self.integer(span, record, 129, 1, 16383)
        scale = self.integer(span, record, 130, 1, 2)
        res_x = self.integer(span, record, 131, 1, 99999)
        res_y = self.integer(span, record, 132, 1, 99999)
        if scale == 1:  # pixels per inch; the model keeps pixels per centimetre
            res_x, res_y = round(res_x / 2.54), round(res_y / 2.54)
        view_number = self.integer(span, record, 133, 0, 15, default=0)
        position = self.integer(span, record, 134, 1, 10)
        quality = self.integer(span, record, 135, 0, 100, default=0)
        count = self.integer(span, record, 136, 0, 255)
        rows = record[137].value if record[137] is not None else []
        if isinstance(rows, str) or not isinstance(rows, list):
            raise span.error("one subfield per minutia is required", 137)
        if len(rows) != count:
            raise span.error(f"9.136 NOM says {count} minutiae but 9.137 holds {len(rows)}",
                             137)
        minutiae = []
        for number, row in enumerate(rows, start=1):
            items = row if isinstance(row, list) else [row]
            if len(items) != 6 or not all(_DIGITS.fullmatch(i.encode("latin-1"))
                                          for i in items):
                raise span.error(f"minutia {number}: six numbers are required (index, x, y, "
                                 "angle, type, quality)", 137)
            _, x, y, code, kind, q = (int(i) for i in items)
            if code > 179:
                raise span.error(f"minutia {number}: angle {code} is above 179 (units of 2 "
                                 "degrees)", 137)
            if kind > 2:
                raise span.error(f"minutia {number}: type {kind} is not 0, 1 or 2", 137)
            if q > 100:
                raise span.error(f"minutia {number}: quality {q} is above 100", 137)
            if x >= width or y >= height:
                raise span.error(f"minutia {number}: ({x}, {y}) lies outside the "
                                 f"{width}x{height} image of 9.128/9.129", 137)
            minutiae.append(Minutia(x=x, y=y, angle=code * ANGLE_UNIT, type=MinutiaType(kind),
                                    quality=q or None))
        view = self.make(span, FingerView, position=position, minutiae=tuple(minutiae),
                         quality=quality, view=view_number, impression=impression)
        return impression, self.make(span, MinutiaeTemplate, width=width, height=height,
                                     views=(view,), resolution_x=res_x, resolution_y=res_y)

    @staticmethod
    def make(span: _Span, kind: Any, **values: Any) -> Any:
        try:
            return kind(**values)
        except ValueError as exc:  # a value the model refuses
            raise span.error(str(exc)) from None


@dataclass
class _ImageContent:
    """An image record's content; a WSQ image is decoded after all records are read."""

    position: int
    impression: int
    record: ImageRecord
    compression: Compression
    ppi: float | None  # declared resolution, None when unknown (Type-14 SLC 0)
    data_tag: int  # 4.009 or 14.999, for error messages
    image: FingerImage | None = None
    wsq: bytes | None = None


# ---------------------------------------------------------------------------- templates


def finger_templates(tx: Transaction) -> tuple[MinutiaeTemplate, ...]:
    """One single-view template per finger that has minutiae, in transaction order."""
    return tuple(f.minutiae for f in tx.fingers if f.minutiae is not None)


def fingers_to_template(tx: Transaction) -> MinutiaeTemplate:
    """All fingers' minutiae as one record (for ISO/IEC 19794-2 or ANSI/INCITS 378); the
    fingers must share image size and resolution, as those formats keep one per record."""
    templates = finger_templates(tx)
    if not templates:
        raise ValueError("the transaction holds no minutiae (no Type-9 record)")
    first = templates[0]
    geometry = (first.width, first.height, first.resolution_x, first.resolution_y)
    for t in templates[1:]:
        if (t.width, t.height, t.resolution_x, t.resolution_y) != geometry:
            raise ValueError("the fingers' minutiae differ in image size or resolution: use "
                             "finger_templates() for one template per finger")
    return MinutiaeTemplate(first.width, first.height,
                            tuple(t.views[0] for t in templates),
                            first.resolution_x, first.resolution_y)


def fingers_from_template(template: MinutiaeTemplate) -> tuple[Finger, ...]:
    """A Finger (minutiae only) for each view of a template; ValueError for position 0."""
    return tuple(
        Finger(position=view.position, impression=view.impression,
               minutiae=MinutiaeTemplate(template.width, template.height, (view,),
                                         template.resolution_x, template.resolution_y))
        for view in template.views)
