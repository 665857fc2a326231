"""Standard minutiae template formats, read and written by our own codecs.

Why our own: measured here, `nbis-py` writes malformed ISO/IEC 19794-2:2005 records
(26-byte header, resolution 0, no extended-data length) and reads conformant ones as zero
minutiae without an error, and `afis` writes wrong version, resolution and quality fields
and cannot read back its own 2011 output. The formats are small and fully specified.

    read(data)                 -> MinutiaeTemplate  (format detected from the header)
    write(template, fmt)       -> bytes             (fmt: one of FORMATS)
"""

from __future__ import annotations

from collections.abc import Callable

from lintas.biometrics.formats import ansi378_2004, iso19794_2_2005, iso19794_2_2011
from lintas.biometrics.formats.reader import TemplateFormatError
from lintas.biometrics.minutiae import MinutiaeTemplate

ISO_2005 = "iso-19794-2:2005"
ISO_2011 = "iso-19794-2:2011"
ANSI_378 = "ansi-incits-378:2004"

_WRITERS: dict[str, Callable[[MinutiaeTemplate], bytes]] = {
    ISO_2005: iso19794_2_2005.write,
    ISO_2011: iso19794_2_2011.write,
    ANSI_378: ansi378_2004.write,
}
_READERS: dict[str, Callable[[bytes], MinutiaeTemplate]] = {
    ISO_2005: iso19794_2_2005.read,
    ISO_2011: iso19794_2_2011.read,
    ANSI_378: ansi378_2004.read,
}
FORMATS = tuple(_WRITERS)

__all__ = ["ANSI_378", "FORMATS", "ISO_2005", "ISO_2011", "TemplateFormatError", "detect",
           "read", "write"]


def detect(data: bytes) -> str:
    """Which of FORMATS a record is, from its header; TemplateFormatError if none."""
    if len(data) < 12 or data[:4] != b"FMR\x00":
        raise TemplateFormatError("not a finger minutiae record (no 'FMR' identifier)", 0)
    version = data[4:8]
    if version == b"030\x00":
        return ISO_2011
    if version != b" 20\x00":
        raise TemplateFormatError(f"unsupported FMR version {version!r}", 4)
    # 2005 and ANSI 378-2004 share the identifier and version; the length field tells them
    # apart: ISO has 4 bytes, ANSI 2 bytes (or 0x0000 then 4 bytes when over 65,535).
    first, second = int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big")
    if first == 0:
        return ISO_2005 if second >= 24 else ANSI_378
    return ANSI_378 if first >= 26 else ISO_2005


def read(data: bytes, fmt: str | None = None) -> MinutiaeTemplate:
    """Parse a record (of `fmt`, or of the detected format), validating every field."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TemplateFormatError("a template is bytes", 0)
    data = bytes(data)
    fmt = fmt or detect(data)
    if fmt not in _READERS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    try:
        return _READERS[fmt](data)
    except TemplateFormatError:
        raise
    except ValueError as exc:  # a value the model refuses, e.g. a 20,000-pixel-wide image
        raise TemplateFormatError(str(exc), 0) from None


def write(template: MinutiaeTemplate, fmt: str) -> bytes:
    if fmt not in _WRITERS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    return _WRITERS[fmt](template)
