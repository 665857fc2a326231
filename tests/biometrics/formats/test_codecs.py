"""ISO/IEC 19794-2 (2005, 2011) and ANSI/INCITS 378-2004 template codecs."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.biometrics import FingerView, Minutia, MinutiaeTemplate, MinutiaType
from lintas.biometrics.formats import (
    ANSI_378,
    FORMATS,
    ISO_2005,
    ISO_2011,
    TemplateFormatError,
    detect,
    read,
    write,
)
from lintas.biometrics.formats.iso19794_2_2011 import read_minutiae

ANGLE_STEP = {ISO_2005: 360 / 256, ISO_2011: 360 / 256, ANSI_378: 2.0}


def sample(n_views: int = 2, n_minutiae: int = 40, seed: int = 7,
           with_quality: bool = True) -> MinutiaeTemplate:
    rnd = random.Random(seed)
    views = []
    for v in range(n_views):
        minutiae = tuple(
            Minutia(x=rnd.randrange(640), y=rnd.randrange(480),
                    angle=rnd.randrange(256) * 360 / 256 if v % 2 else rnd.randrange(180) * 2.0,
                    type=rnd.choice([MinutiaType.ENDING, MinutiaType.BIFURCATION]),
                    quality=rnd.randrange(1, 101) if with_quality else None)
            for _ in range(n_minutiae))
        views.append(FingerView(position=v + 1, minutiae=minutiae, quality=60 + v, view=0,
                                impression=0))
    return MinutiaeTemplate(640, 480, tuple(views))


def close(a: MinutiaeTemplate, b: MinutiaeTemplate, step: float) -> None:
    assert (a.width, a.height, a.resolution_x, a.resolution_y) == (
        b.width, b.height, b.resolution_x, b.resolution_y)
    assert len(a.views) == len(b.views)
    for va, vb in zip(a.views, b.views, strict=True):
        assert (va.position, va.quality, va.impression) == (vb.position, vb.quality,
                                                            vb.impression)
        for ma, mb in zip(va.minutiae, vb.minutiae, strict=True):
            assert (ma.x, ma.y, ma.type, ma.quality) == (mb.x, mb.y, mb.type, mb.quality)
            diff = abs(ma.angle - mb.angle) % 360
            assert min(diff, 360 - diff) <= step / 2 + 1e-9


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt: str) -> None:
    t = sample()
    data = write(t, fmt)
    assert detect(data) == fmt
    back = read(data)
    close(t, back, ANGLE_STEP[fmt])
    assert write(back, fmt) == data, "writing what was read gives the same bytes"


def test_iso_2005_header_is_conformant() -> None:
    data = write(sample(n_views=1, n_minutiae=3), ISO_2005)
    assert data[:8] == b"FMR\x00 20\x00"
    assert int.from_bytes(data[8:12], "big") == len(data) == 24 + 4 + 3 * 6 + 2
    assert int.from_bytes(data[14:16], "big") == 640 and int.from_bytes(data[16:18], "big") == 480
    assert int.from_bytes(data[18:20], "big") == 197 == int.from_bytes(data[20:22], "big")
    assert data[22] == 1 and data[23] == 0
    assert data[-2:] == b"\x00\x00", "the extended data length is present (and 0)"


def test_iso_2011_header_is_conformant() -> None:
    data = write(sample(n_views=1, n_minutiae=3, with_quality=False), ISO_2011)
    assert data[:8] == b"FMR\x00030\x00"
    assert int.from_bytes(data[8:12], "big") == len(data)
    assert int.from_bytes(data[12:14], "big") == 1 and data[14] == 0
    rep_len = int.from_bytes(data[15:19], "big")
    assert 15 + rep_len == len(data)
    assert data[19:28] == b"\xff" * 9  # capture time unknown
    # no minutia quality -> 5-byte minutiae
    assert data[-2 - 3 * 5 - 2] >> 4 == 5


def test_ansi_378_long_length_form() -> None:
    views = tuple(FingerView(position=(i % 10) + 1, minutiae=sample(1, 255, seed=i).views[0]
                             .minutiae) for i in range(45))
    t = MinutiaeTemplate(640, 480, views)
    data = write(t, ANSI_378)
    assert len(data) > 0xFFFF and data[8:10] == b"\x00\x00"
    assert detect(data) == ANSI_378
    close(t, read(data), 2.0)


def test_three_finger_views_and_unknown_position() -> None:
    t = MinutiaeTemplate(500, 500, (FingerView(0, ()), FingerView(2, ()), FingerView(7, ())))
    for fmt in FORMATS:
        assert [v.position for v in read(write(t, fmt)).views] == [0, 2, 7]


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncation_at_every_byte_is_a_clear_error(fmt: str) -> None:
    data = write(sample(n_views=1, n_minutiae=5), fmt)
    for cut in range(len(data)):
        with pytest.raises(TemplateFormatError):
            read(data[:cut])
    with pytest.raises(TemplateFormatError, match="after the record"):
        read(data + b"\x00")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:18] + b"\x00\x00" + d[20:], "resolution"),
        (lambda d: d[:24] + bytes([11]) + d[25:], "finger position"),
        (lambda d: d[:26] + bytes([101]) + d[27:], "finger quality"),
        (lambda d: d[:28] + bytes([0xC0 | d[28]]) + d[29:], "reserved"),
        (lambda d: d[:28] + b"\x3f\xff" + d[30:], "outside"),
        (lambda d: d[:4] + b" 21\x00" + d[8:], "version"),
    ],
)
def test_invalid_fields_are_named(mutate, message: str) -> None:
    data = write(sample(n_views=1, n_minutiae=2), ISO_2005)
    with pytest.raises(TemplateFormatError, match=message):
        read(mutate(data))


def test_angle_codes_beyond_179_are_refused_in_ansi() -> None:
    data = bytearray(write(sample(n_views=1, n_minutiae=1), ANSI_378))
    data[26 + 4 + 4] = 200  # the angle byte of the only minutia
    with pytest.raises(TemplateFormatError, match="angle code 200"):
        read(bytes(data))


def test_model_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="angle"):
        Minutia(1, 1, 360.0)
    with pytest.raises(ValueError, match="outside the"):
        MinutiaeTemplate(10, 10, (FingerView(1, (Minutia(10, 3, 0.0),)),))
    with pytest.raises(ValueError, match="position"):
        FingerView(11, ())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(TemplateFormatError):
        read(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.integers(0, 10**6), st.lists(st.tuples(
    st.integers(0, 200), st.integers(0, 255)), max_size=40))
def test_mutated_records_never_crash(fmt: str, seed: int, edits: list[tuple[int, int]]) -> None:
    data = bytearray(write(sample(n_views=2, n_minutiae=8, seed=seed % 50), fmt))
    for pos, value in edits:
        data[pos % len(data)] = value
    with contextlib.suppress(TemplateFormatError):
        read(bytes(data))


def iso_2011_minutia_offset(data: bytes, index: int) -> int:
    """Where minutia `index` of the first representation of a record we wrote begins:
    15 bytes of general header, 4 of representation length, 9+1+2+2 of capture fields,
    1 quality block of 5, then position, number, resolutions, impression, size, minutia
    field length and count (1+1+2+2+1+2+2+1+1)."""
    blocks = data[15 + 4 + 14]
    return 15 + 4 + 14 + 1 + 5 * blocks + 13 + 6 * index


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (0, 0xC0, r"minutia at byte \d+: type code 3 is reserved"),
        (0, 0x3F, r"minutia at byte \d+: \(\d+, \d+\) outside the 640x480 image"),
        (5, 101, r"minutia at byte \d+: quality 101 above 100"),
    ],
)
def test_iso_2011_minutia_fields_are_checked_and_placed(field: int, value: int,
                                                        message: str) -> None:
    data = bytearray(write(sample(n_views=1, n_minutiae=6), ISO_2011))
    at = iso_2011_minutia_offset(bytes(data), 3)
    if field == 0:  # the type and the top bits of x share the first byte
        data[at] |= value
    else:
        data[at + field] = value
    with pytest.raises(TemplateFormatError, match=message) as caught:
        read(bytes(data))
    assert f"minutia at byte {at}:" in str(caught.value)
    with pytest.raises(TemplateFormatError, match=message):
        read_minutiae(bytes(data))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(0, 60), st.booleans())
def test_iso_2011_minutiae_arrays_agree_with_the_objects(seed: int, views: int, count: int,
                                                         with_quality: bool) -> None:
    data = write(sample(n_views=views, n_minutiae=count, seed=seed,
                        with_quality=with_quality), ISO_2011)
    arrays = read_minutiae(data)
    template = read(data)
    assert [p for p, _ in arrays] == [v.position for v in template.views]
    for (_, rows), view in zip(arrays, template.views, strict=True):
        assert rows.shape == (len(view.minutiae), 3)
        assert rows.tolist() == [[m.x, m.y, m.angle] for m in view.minutiae]
