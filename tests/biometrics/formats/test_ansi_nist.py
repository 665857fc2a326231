"""ANSI/NIST-ITL 1-2011 transactions: Types 1, 2, 4, 9 and 14 through nistitl."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nistitl
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.biometrics import FingerView, Minutia, MinutiaeTemplate, MinutiaType
from lintas.biometrics.formats import ISO_2005, ISO_2011, TemplateFormatError, read, write
from lintas.biometrics.formats.ansi_nist import (
    MAX_FIELDS,
    MAX_RECORDS,
    AnsiNistError,
    Compression,
    Finger,
    ImageRecord,
    Transaction,
    finger_templates,
    fingers_from_template,
    fingers_to_template,
    read_transaction,
    write_transaction,
)
from lintas.biometrics.images import FingerImage, from_array, load_image

DAY = dt.date(2024, 5, 17)


def pattern(width: int = 96, height: int = 80, seed: int = 0) -> FingerImage:
    """A ridge-like grey pattern (WSQ compresses it as it would a fingerprint)."""
    yy, xx = np.mgrid[0:height, 0:width]
    phase = 0.35 * xx + 0.2 * yy + 0.002 * (xx - width / 2) ** 2 + seed
    return from_array((127.5 + 100 * np.sin(phase)).astype(np.uint8))


def minutiae(position: int, n: int = 30, seed: int = 1, width: int = 96, height: int = 80,
             on_grid: bool = True) -> MinutiaeTemplate:
    rnd = random.Random(seed)
    found = tuple(
        Minutia(x=rnd.randrange(width), y=rnd.randrange(height),
                angle=rnd.randrange(180) * 2.0 if on_grid else rnd.uniform(0, 359.9),
                type=rnd.choice(list(MinutiaType)),
                quality=rnd.choice([None, *range(1, 101)]))
        for _ in range(n))
    view = FingerView(position=position, minutiae=found, quality=40 + position, view=position % 3)
    return MinutiaeTemplate(width, height, (view,))


def transaction(fingers: list[Finger], **type1: Any) -> Transaction:
    values: dict[str, Any] = {"tot": "CAR", "dat": DAY, "dai": "WA0000001", "ori": "ID0000001",
                              "tcn": "LINTAS-0001", "type2": {"2.003": "case 17"}}
    values.update(type1)
    return Transaction(fingers=tuple(fingers), **values)


def small_transaction() -> bytes:
    """Two fingers, raw images (text fields and image bytes only)."""
    return write_transaction(transaction([
        Finger(position=1, image=pattern(64, 64), minutiae=minutiae(1, n=5, width=64, height=64)),
        Finger(position=6, image=pattern(64, 64, seed=3), record=ImageRecord.TYPE_4)]))


def edit(data: bytes, change: Callable[[Any], None]) -> bytes:
    """Re-encode a transaction with nistitl after `change` (lengths and CNT recomputed)."""
    msg = nistitl.Message()
    msg.parse(data)
    change(msg)
    return bytes(msg.NIST)


def record(msg: Any, rtype: int, idc: int = 1) -> Any:
    return next(r for r in msg if r.type == rtype and int(r.IDC) == idc)


def assert_same_minutiae(a: MinutiaeTemplate | None, b: MinutiaeTemplate | None,
                         angle_step: float = 0.0) -> None:
    assert a is not None and b is not None
    assert (a.width, a.height, a.resolution_x, a.resolution_y) == (
        b.width, b.height, b.resolution_x, b.resolution_y)
    for va, vb in zip(a.views, b.views, strict=True):
        assert (va.position, va.quality, va.view, va.impression) == (
            vb.position, vb.quality, vb.view, vb.impression)
        for ma, mb in zip(va.minutiae, vb.minutiae, strict=True):
            assert (ma.x, ma.y, ma.type, ma.quality) == (mb.x, mb.y, mb.type, mb.quality)
            diff = abs(ma.angle - mb.angle) % 360
            assert min(diff, 360 - diff) <= angle_step / 2 + 1e-9


# ------------------------------------------------------------------ round trips


def test_minutiae_on_the_2_degree_grid_round_trip_exactly() -> None:
    fingers = [Finger(position=p, minutiae=minutiae(p, seed=p)) for p in (2, 7)]
    back = read_transaction(write_transaction(transaction(fingers)))
    for sent, got in zip(fingers, back.fingers, strict=True):
        assert got.image is None
        assert got.minutiae == sent.minutiae  # frozen dataclasses: every value equal


def test_any_angle_comes_back_within_one_degree() -> None:
    sent = Finger(position=3, minutiae=minutiae(3, n=100, on_grid=False))
    got = read_transaction(write_transaction(transaction([sent]))).fingers[0]
    assert_same_minutiae(sent.minutiae, got.minutiae, angle_step=2.0)


@pytest.mark.parametrize("fmt", [ISO_2005, ISO_2011])
def test_iso_to_ansi_nist_to_internal_and_back(fmt: str) -> None:
    views = tuple(minutiae(p, n=40, seed=p, width=300, height=400, on_grid=False).views[0]
                  for p in (1, 2, 6))
    iso = write(MinutiaeTemplate(300, 400, views), fmt)
    internal = read(iso)
    tx = transaction(list(fingers_from_template(internal)))
    back = read_transaction(write_transaction(tx))
    merged = fingers_to_template(back)
    assert_same_minutiae(internal, merged, angle_step=2.0)
    again = read(write(merged, fmt))
    assert_same_minutiae(internal, again, angle_step=2.0 + 360 / 256)
    assert [t.views[0].position for t in finger_templates(back)] == [1, 2, 6]


@pytest.mark.parametrize("kind", list(ImageRecord))
def test_raw_images_round_trip_exactly(kind: ImageRecord) -> None:
    image = pattern(123, 77)
    got = read_transaction(write_transaction(transaction(
        [Finger(position=4, impression=1, image=image, record=kind)]))).fingers[0]
    assert got.image is not None
    assert np.array_equal(got.image.pixels, image.pixels)
    assert (got.record, got.compression, got.position, got.impression) == (
        kind, Compression.NONE, 4, 1)
    assert got.image.source_ppi == 500 and got.image.ppi_declared


def test_wsq_images_come_back_close_in_both_record_types() -> None:
    images = [pattern(200, 180, seed=s) for s in range(2)]
    fingers = [Finger(position=p, image=img, record=kind, compression=Compression.WSQ)
               for p, img, kind in zip((2, 3), images, ImageRecord, strict=True)]
    data = write_transaction(transaction(fingers))
    assert len(data) < sum(i.pixels.size for i in images) / 3, "WSQ compresses"
    back = read_transaction(data)
    for img, got, kind in zip(images, back.fingers, ImageRecord, strict=True):
        assert got.image is not None and (got.record, got.compression) == (kind, Compression.WSQ)
        assert got.image.pixels.shape == img.pixels.shape
        error = np.abs(got.image.pixels.astype(int) - img.pixels.astype(int))
        assert error.mean() < 12 and np.corrcoef(got.image.pixels.ravel(),
                                                 img.pixels.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("count", [1, 10])
def test_one_and_ten_fingers(count: int) -> None:
    fingers = [Finger(position=p, image=pattern(64, 72, seed=p),
                      minutiae=minutiae(p, n=p, width=64, height=72),
                      record=ImageRecord.TYPE_4 if p % 2 else ImageRecord.TYPE_14)
               for p in range(1, count + 1)]
    data = write_transaction(transaction(fingers))
    msg = nistitl.Message()
    msg.parse(data)
    assert msg[0].VER == "0500"
    assert sorted(int(r.IDC) for r in msg if r.type in (4, 14)) == list(range(1, count + 1))
    back = read_transaction(data)
    assert [f.position for f in back.fingers] == list(range(1, count + 1))
    for sent, got in zip(fingers, back.fingers, strict=True):
        assert got.record == sent.record and got.image is not None and sent.image is not None
        assert np.array_equal(got.image.pixels, sent.image.pixels)
        assert got.minutiae == sent.minutiae


def test_plain_and_rolled_of_one_finger_may_both_travel() -> None:
    fingers = [Finger(position=2, impression=i, image=pattern(64, 64, seed=i)) for i in (0, 1)]
    back = read_transaction(write_transaction(transaction(fingers)))
    assert [(f.position, f.impression) for f in back.fingers] == [(2, 0), (2, 1)]


def test_utf8_text_in_type2_round_trips_with_dcs() -> None:
    text = {"2.003": "Ni Luh Putu Ayu", "2.018": "Nguyễn Văn Anh", "2.020": "محمد الفاتح",
            "2.2033": "李小龍 — Śródmieście"}
    data = write_transaction(transaction([Finger(position=1, minutiae=minutiae(1))], type2=text))
    assert b"1.015:3\x1fUTF-8\x1d" in data or b"1.015:3\x1fUTF-8\x1c" in data
    assert "Nguyễn".encode() in data
    assert read_transaction(data).type2 == text
    ascii_only = write_transaction(transaction([Finger(position=1, minutiae=minutiae(1))]))
    assert b"1.015:" not in ascii_only, "7-bit ASCII is the default: no DCS needed"


def test_type1_fields_round_trip() -> None:
    tx = transaction([Finger(position=9, minutiae=minutiae(9))], tot="FANC", dai="SG0000001",
                     ori="MY0000002", tcn="2024-0517-0001", dat=dt.date(1999, 12, 31), type2={})
    back = read_transaction(write_transaction(tx))
    assert (back.tot, back.dat, back.dai, back.ori, back.tcn, back.type2) == (
        "FANC", dt.date(1999, 12, 31), "SG0000001", "MY0000002", "2024-0517-0001", {})


def test_declared_resolutions_are_resampled_to_500_ppi() -> None:
    data = write_transaction(transaction([Finger(position=1, image=pattern(200, 160))]))

    def type14(slc: str, scale: str) -> Callable[[Any], None]:
        def change(msg: Any) -> None:
            r = record(msg, 14)
            r._8, r._9, r._10 = slc, scale, scale
        return change

    got = read_transaction(edit(data, type14("1", "1000"))).fingers[0].image
    assert got is not None and (got.width, got.height, got.source_ppi) == (100, 80, 1000)
    got = read_transaction(edit(data, type14("2", "394"))).fingers[0].image  # pixels/cm
    assert got is not None and (got.width, got.height) == (100, 80) and got.ppi_declared
    got = read_transaction(edit(data, type14("0", "1"))).fingers[0].image  # aspect only
    assert got is not None and (got.width, got.height) == (200, 160)
    assert not got.ppi_declared

    def native_1000_ppi(msg: Any) -> None:
        msg[0].NSR = "39.37"  # pixels/mm
        r = record(msg, 4)
        r.value = r.value[:7] + b"\x01" + r.value[8:]  # ISR 1: the native resolution

    type4 = write_transaction(transaction([Finger(position=1, image=pattern(200, 160),
                                                  record=ImageRecord.TYPE_4)]))
    got = read_transaction(edit(type4, native_1000_ppi)).fingers[0].image
    assert got is not None and (got.width, got.height) == (100, 80)


def test_real_impression_with_its_mindtct_minutiae(fvc2004: Path) -> None:
    from lintas.biometrics.extraction import extract

    image = load_image((fvc2004 / "DB1_B" / "101_1.tif").read_bytes())
    view = extract(image, position=2)
    template = MinutiaeTemplate(image.width, image.height, (view,))
    sent = Finger(position=2, image=image, minutiae=template, compression=Compression.WSQ)
    back = read_transaction(write_transaction(transaction([sent]))).fingers[0]
    assert back.image is not None and back.image.pixels.shape == (480, 640)
    error = np.abs(back.image.pixels.astype(int) - image.pixels.astype(int))
    assert error.mean() < 6, "WSQ at its default rate keeps the print"
    assert len(view.minutiae) >= 10
    assert_same_minutiae(template, back.minutiae, angle_step=2.0)  # MINDTCT: 11.25° steps
    iso = read(write(fingers_to_template(read_transaction(write_transaction(
        transaction([sent])))), ISO_2011))
    assert [(m.x, m.y) for m in iso.views[0].minutiae] == [(m.x, m.y) for m in view.minutiae]


# ------------------------------------------------------------------ refusing bad input


@pytest.mark.parametrize("position", [0, 11, -1, True])
def test_finger_positions_outside_1_to_10_are_refused(position: int) -> None:
    with pytest.raises(ValueError, match="FGP"):
        Finger(position=position, image=pattern())


def test_model_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="twice"):
        transaction([Finger(position=2, image=pattern()), Finger(position=2, image=pattern())])
    with pytest.raises(ValueError, match="an image, minutiae, or both"):
        Finger(position=2)
    with pytest.raises(ValueError, match="view is of position 3"):
        Finger(position=2, minutiae=minutiae(3))
    with pytest.raises(ValueError, match=r"1\.\.10"):
        transaction([Finger(position=p % 10 + 1, impression=p // 10, image=pattern())
                     for p in range(11)])
    with pytest.raises(ValueError, match="ASCII"):
        transaction([Finger(position=1, image=pattern())], ori="Dinas Imigrasi–Bali")
    with pytest.raises(ValueError, match="control"):
        transaction([Finger(position=1, image=pattern())], type2={"2.003": "a\x1eb"})
    with pytest.raises(ValueError, match="tag"):
        transaction([Finger(position=1, image=pattern())], type2={"2.002": "x"})
    with pytest.raises(ValueError, match=r"FGP\) 0"):
        fingers_from_template(MinutiaeTemplate(100, 100, (FingerView(0, ()),)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: setattr(record(m, 14), "_13", "11"), r"Type-14, IDC 1\), field 14.013"),
        (lambda m: setattr(record(m, 14), "_13", "0"), r"field 14.013"),
        (lambda m: setattr(record(m, 9), "_134", "0"), r"field 9.134"),
        (lambda m: setattr(record(m, 9), "_134", "3"), r"differs from the image"),
        (lambda m: setattr(record(m, 4, 2), "value",
                           b"\x00\x0b" + record(m, 4, 2).value[2:]), r"field 4.004"),
        (lambda m: setattr(m[0], "VER", "0400"), r"field 1.002.*only ANSI/NIST-ITL 1-2011"),
        (lambda m: setattr(m[0], "DAT", "20241301"), r"field 1.005"),
        (lambda m: setattr(m[0], "_15", [["2", "UTF-16"]]), r"field 1.015"),
        (lambda m: setattr(record(m, 2, 0), "_5", "Dž".encode().decode("latin-1")),
         r"Type-2.*field 2.005.*DCS"),
        (lambda m: setattr(record(m, 2, 0), "_5", ["a", "b"]), r"field 2.005.*subfields"),
        (lambda m: setattr(record(m, 9), "_136", "6"), r"field 9.137.*NOM"),
        (lambda m: setattr(record(m, 9), "_137", [["1", "70", "3", "10", "1", "0"]] * 5),
         r"field 9.137.*outside"),
        (lambda m: setattr(record(m, 9), "_137", [["1", "7", "3", "180", "1", "0"]] * 5),
         r"field 9.137.*angle 180"),
        (lambda m: setattr(record(m, 14), "_11", "JP2"), r"field 14.011"),
        (lambda m: setattr(record(m, 14), "_6", "65"), r"field 14.999.*raw image"),
        (lambda m: setattr(record(m, 14), "_20", "see 999: below"),
         r"Type-14, IDC 1\): nistitl misreads"),
    ],
)
def test_invalid_fields_are_named(change: Callable[[Any], None], message: str) -> None:
    with pytest.raises(AnsiNistError, match=message):
        read_transaction(edit(small_transaction(), change))


def test_missing_type1_wrong_version_and_unsupported_records() -> None:
    data = small_transaction()
    type1_length = int(data[6:data.index(b"\x1d")])
    with pytest.raises(AnsiNistError, match=r"'1\.001:'"):
        read_transaction(data[type1_length:])  # starts with the Type-2 record
    with pytest.raises(AnsiNistError, match=r"field 1\.002"):
        read_transaction(data.replace(b"1.002:0500", b"1.002:0502"))

    def add_face(msg: Any) -> None:
        face = nistitl.AsciiRecord(10)
        face.IDC = 5
        msg += face

    with pytest.raises(AnsiNistError, match="Type-10: only Types 1, 2, 4, 9 and 14"):
        read_transaction(edit(data, add_face))


def test_declared_sizes_are_guarded() -> None:
    data = small_transaction()
    with pytest.raises(AnsiNistError, match=r"only \d+ remain"):
        read_transaction(data.replace(b"2.001:", b"2.001:99999", 1))
    with pytest.raises(AnsiNistError, match="bytes after the last record"):
        read_transaction(data + b"\x1c")
    type4 = data.index(b"\x00\x00\x10\x12\x02")  # a 64x64 raw Type-4 record, IDC 2
    with pytest.raises(AnsiNistError, match="declares 4294967295 bytes"):
        read_transaction(data[:type4] + b"\xff\xff\xff\xff" + data[type4 + 4:])
    with pytest.raises(AnsiNistError, match="below the 18-byte header"):
        read_transaction(data[:type4] + b"\x00\x00\x00\x00" + data[type4 + 4:])

    def many_records(msg: Any) -> None:
        for idc in range(MAX_RECORDS):
            extra = nistitl.AsciiRecord(2)
            extra.IDC = 10 + idc
            msg += extra

    with pytest.raises(AnsiNistError, match=f"at most {MAX_RECORDS}"):
        read_transaction(edit(data, many_records))

    def many_fields(msg: Any) -> None:
        for tag in range(4, 5 + MAX_FIELDS):
            record(msg, 2, 0)._fields.append(nistitl.Field(2, tag, "x"))

    with pytest.raises(AnsiNistError, match=f"more than {MAX_FIELDS} fields"):
        read_transaction(edit(data, many_fields))
    start = data.index(b"2.001:")
    length = int(data[start + 6:data.index(b"\x1d", start)])
    twice = b"2.004:x\x1d2.004:y\x1d"
    body = data[data.index(b"2.002:", start):start + length]
    header = b"2.001:%d\x1d" % (length + len(twice))
    assert len(header) + len(twice) + len(body) == length + len(twice)
    type2 = header + body.replace(b"2.003:", twice + b"2.003:")
    with pytest.raises(AnsiNistError, match=r"field 2.004: the field appears twice"):
        read_transaction(data[:start] + type2 + data[start + length:])


def test_truncation_at_every_byte_is_a_clear_error() -> None:
    data = small_transaction()
    for cut in range(len(data)):
        with pytest.raises(AnsiNistError):
            read_transaction(data[:cut])


@pytest.mark.parametrize("data", [b"", b"garbage", b"1.001:", b"1.001:18\x1d1.002:0500\x1c",
                                  b"\x00" * 64, b"1.001:99999999999\x1d"])
def test_garbage_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(AnsiNistError):
        read_transaction(data)


def test_not_bytes_is_a_clear_error() -> None:
    with pytest.raises(AnsiNistError, match="bytes"):
        read_transaction("1.001:")  # type: ignore[arg-type]
    assert issubclass(AnsiNistError, TemplateFormatError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(AnsiNistError):
        read_transaction(data)


_SMALL = small_transaction()
# Offsets outside the two 64x64 pixel blocks: the fields, separators and binary headers.
_PIXELS = [(_SMALL.index(img.pixels.tobytes()), img.pixels.size)
           for img in (pattern(64, 64), pattern(64, 64, seed=3))]
_HOT = [i for i in range(len(_SMALL)) if not any(s <= i < s + n for s, n in _PIXELS)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HOT), st.integers(0, 255)), min_size=1,
                max_size=12))
def test_mutated_transactions_never_crash(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SMALL)
    for pos, value in edits:
        data[pos] = value
    with contextlib.suppress(AnsiNistError):
        read_transaction(bytes(data))


def test_a_wsq_decoder_crash_is_an_error_not_the_end_of_the_process() -> None:
    # Measured here: byte 600 of this WSQ image set to 188 makes the NBIS decoder in
    # `wsq` die with SIGSEGV. The reader decodes in a child process and says so.
    image = from_array((np.add.outer(np.arange(120), np.arange(100)) * 7 % 256)
                       .astype(np.uint8))
    data = write_transaction(transaction([Finger(position=1, image=image,
                                                 compression=Compression.WSQ)]))
    start = data.index(b"14.999:") + len(b"14.999:")
    wsq = data[start:-1]
    if hashlib.sha256(wsq).hexdigest()[:16] != "c47b1aa49751aec5":
        pytest.skip("this wsq encoder writes other bytes: the recorded crash does not apply")
    bad = data[:start + 600] + bytes([188]) + data[start + 601:]
    with pytest.raises(AnsiNistError, match=r"field 14.999: the WSQ image cannot be decoded"):
        read_transaction(bad)


def test_templates_of_fingers_of_other_geometry_are_not_merged() -> None:
    tx = transaction([Finger(position=1, minutiae=minutiae(1)),
                      Finger(position=2, minutiae=minutiae(2, width=120, height=90))])
    assert len(finger_templates(tx)) == 2
    with pytest.raises(ValueError, match="finger_templates"):
        fingers_to_template(tx)
    with pytest.raises(ValueError, match="no minutiae"):
        fingers_to_template(transaction([Finger(position=1, image=pattern())]))
    assert dataclasses.replace(tx.fingers[0], image=pattern()).image is not None
