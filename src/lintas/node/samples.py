"""Fingerprints as officers hand them in (images, ISO/ANSI minutiae templates, an
ANSI/NIST-ITL transaction), turned into the gallery's samples.

Shared by the REST API and the CLI so that both accept exactly the same inputs and
refuse bad ones with the same messages, each naming the field (`fingers[1].data: ...`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from lintas.biometrics import formats
from lintas.biometrics.formats import TemplateFormatError
from lintas.biometrics.images import ImageError, load_image
from lintas.node.gallery import Sample

KINDS = ("image", "template")
MAX_FINGERS = 10
MAX_BYTES = 8 * 1024 * 1024  # one image or one transaction
B64_MAX = MAX_BYTES * 4 // 3 + 4  # the same, base64-encoded


class SampleError(ValueError):
    """An input that is not a usable fingerprint; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FingerInput:
    """One finger as given: `kind` "image" (PNG, TIFF, BMP, JPEG or WSQ, at `ppi` when
    the file does not say) or "template" (ISO/IEC 19794-2:2005/2011 or ANSI/INCITS 378,
    the format detected from its header)."""

    position: int
    kind: str
    data: bytes
    ppi: float | None = None


def decode_base64(value: str, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise SampleError(field, "base64-encoded bytes are required")
    if len(value) > B64_MAX:
        raise SampleError(field, f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SampleError(field, "not valid base64") from None


def samples(fingers: Sequence[FingerInput] = (), ansi_nist: bytes | None = None,
            field: str = "fingers") -> list[tuple[int, Sample]]:
    """The samples to enrol or to check, from the given fingers and/or one ANSI/NIST-ITL
    transaction (its Type-14/Type-4 images, or the Type-9 minutiae of a finger that has
    no image)."""
    out: list[tuple[int, Sample]] = []
    if len(fingers) > MAX_FINGERS:
        raise SampleError(field, f"at most {MAX_FINGERS} fingers")
    for i, f in enumerate(fingers):
        where = f"{field}[{i}]"
        if isinstance(f.position, bool) or not isinstance(f.position, int) \
                or not 1 <= f.position <= 10:
            raise SampleError(f"{where}.position", f"{f.position!r} is not a finger position "
                                                   "1-10 (1 right thumb ... 10 left little)")
        if f.kind not in KINDS:
            raise SampleError(f"{where}.kind", f"{f.kind!r} is not one of {', '.join(KINDS)}")
        if len(f.data) > MAX_BYTES:
            raise SampleError(f"{where}.data", f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
        try:
            if f.kind == "image":
                out.append((f.position, load_image(f.data, f.ppi)))
            else:
                out.append((f.position, formats.read(f.data)))
        except (ImageError, TemplateFormatError, ValueError) as exc:
            raise SampleError(f"{where}.data", str(exc)) from None
    if ansi_nist is not None:
        out.extend(transaction_samples(ansi_nist)[1])
    if not out:
        raise SampleError(field, "at least one finger (or an ANSI/NIST-ITL transaction)")
    return out


def transaction_samples(data: bytes, field: str = "ansi_nist"
                        ) -> tuple[str, list[tuple[int, Sample]]]:
    """The transaction control number (1.009) and the fingers of a transaction."""
    from lintas.biometrics.formats.ansi_nist import AnsiNistError, read_transaction

    if len(data) > MAX_BYTES:
        raise SampleError(field, f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        tx = read_transaction(data)
    except (AnsiNistError, ValueError) as exc:
        raise SampleError(field, str(exc)) from None
    out: list[tuple[int, Sample]] = []
    for finger in tx.fingers:
        sample = finger.image if finger.image is not None else finger.minutiae
        if sample is not None:
            out.append((finger.position, sample))
    if not out:
        raise SampleError(field, "the transaction holds no finger image or minutiae")
    return tx.tcn.strip(), out
