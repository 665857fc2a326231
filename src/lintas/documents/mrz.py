"""ICAO Doc 9303 machine-readable zones (MRZ): parse and validate, and compose.

Why our own: the PyPI `mrz` package is GPL-3.0 (this project is Apache-2.0) and rejects
valid TD1 documents whose number is longer than nine characters (the form ICAO 9303
Part 5 defines and Part 11's worked example uses). The rule set is small and stable:

- **Formats** (by line count, line length and the first character): TD1 identity cards,
  3 lines of 30 (Part 5); TD2 cards, 2 of 36 (Part 6); TD3 passports, 2 of 44 (Part 4);
  machine-readable visas MRV-A, 2 of 44, and MRV-B, 2 of 36 (Part 7), whose document
  code starts with V.
- **Characters**: A-Z, 0-9 and the filler `<`.
- **Check digits** (Part 3, 4.9): each character's value (digits as themselves, A-Z as
  10-35, `<` as 0) times the weights 7, 3, 1 repeating, summed, modulo 10. Every check
  digit is verified: document number, date of birth, date of expiry, the optional data
  where the format has a check digit for it, and the composite check digit (TD1, TD2,
  TD3; visas have none).
- **Long document numbers** (TD1 and TD2): when the number has more than nine
  characters, the first nine fill the number field, its check digit position holds `<`,
  and the rest of the number, then its check digit, then `<`, open the optional data.
  The check digit covers the whole number.

A failure raises `MRZError` naming the field (`document_number`, `birth_date`, ...) and
saying what is wrong, in words an officer at a counter can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMATS = ("TD1", "TD2", "TD3", "MRV-A", "MRV-B")
MAX_INPUT = 400  # characters: far above any MRZ (90), so nothing long is ever scanned

_ALLOWED = re.compile(r"[A-Z0-9<]*")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class MRZError(ValueError):
    """An MRZ that is malformed or fails a check; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _value(char: str) -> int:
    if char.isdigit():
        return int(char)
    if char == "<":
        return 0
    return _LETTERS.index(char) + 10


def check_digit(text: str) -> str:
    """The ICAO 9303 check digit of `text` (A-Z, 0-9 and `<` only)."""
    if not _ALLOWED.fullmatch(text):
        raise MRZError("text", f"{text!r} holds characters other than A-Z, 0-9 and <")
    return str(sum(_value(c) * (7, 3, 1)[i % 3] for i, c in enumerate(text)) % 10)


@dataclass(frozen=True)
class MachineReadableZone:
    """The fields of one MRZ, fillers removed.

    Dates stay as printed, YYMMDD (the century is not in the MRZ): a date of birth may
    hold `<` where a part is unknown. `sex` is "M", "F", "X" or "" (unspecified).
    Names are the primary and secondary identifiers with their components separated by
    single spaces, as transliterated on the document. TD1 has two optional data fields;
    the other formats have one and leave `optional_data_2` empty.
    """

    format: str
    document_code: str
    issuing_state: str
    document_number: str
    primary_identifier: str
    secondary_identifier: str
    nationality: str
    birth_date: str
    sex: str
    expiry_date: str
    optional_data: str = ""
    optional_data_2: str = ""

    def text(self) -> str:
        """The MRZ as printed: its lines joined by newlines, check digits computed."""
        return compose(self)


# --- parsing ------------------------------------------------------------------------

_SHAPES = {3: {30: "TD1"}, 2: {36: "TD2", 44: "TD3"}}
_ONE_LINE = {90: (3, 30), 72: (2, 36), 88: (2, 44)}


def _lines(text: str) -> list[str]:
    if not isinstance(text, str):
        raise MRZError("mrz", "expected text")
    if len(text) > MAX_INPUT:
        raise MRZError("mrz", f"{len(text)} characters is far too long for an MRZ "
                              "(at most 90 plus line breaks)")
    lines = [line.strip() for line in text.strip().upper().splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) in _ONE_LINE:
        count, width = _ONE_LINE[len(lines[0])]
        lines = [lines[0][i * width:(i + 1) * width] for i in range(count)]
    if not lines:
        raise MRZError("mrz", "empty")
    widths = {len(line) for line in lines}
    if len(widths) != 1 or len(lines) not in _SHAPES or widths.pop() not in _SHAPES[len(lines)]:
        shape = " + ".join(str(len(line)) for line in lines)
        raise MRZError("mrz", f"lines of {shape} characters: an MRZ has 3 lines of 30 (TD1), "
                              "2 of 36 (TD2, MRV-B) or 2 of 44 (TD3, MRV-A)")
    for number, line in enumerate(lines, 1):
        bad = next((c for c in line if not ("A" <= c <= "Z" or "0" <= c <= "9" or c == "<")),
                   None)
        if bad is not None:
            raise MRZError(f"line {number}", f"character {bad!r} at position "
                                             f"{line.index(bad) + 1} is not allowed: an MRZ "
                                             "holds only A-Z, 0-9 and <")
    return lines


def _strip(text: str) -> str:
    return text.rstrip("<")


def _code(field_value: str, first: str, form: str) -> str:
    if field_value[0] not in first:
        allowed = " or ".join(first)
        raise MRZError("document_code", f"{field_value!r}: a {form} document code starts "
                                        f"with {allowed}")
    if field_value[1] != "<" and not field_value[1].isalpha():
        raise MRZError("document_code", f"{field_value!r}: the second character must be a "
                                        "letter or <")
    return _strip(field_value)


def _state(name: str, value: str) -> str:
    stripped = _strip(value)
    if not stripped or not stripped.isalpha():
        raise MRZError(name, f"{value!r} is not a state code (three letters, or fewer "
                             "followed by <)")
    return stripped


def _check(name: str, value: str, found: str, *, empty_may_skip: bool = False) -> None:
    if empty_may_skip and set(value) <= {"<"} and found in "<0":
        return
    expected = check_digit(value)
    if found != expected:
        shown = "<" if found == "<" else found
        raise MRZError(name, f"check digit {shown} does not match {value!r} (it should be "
                             f"{expected}): misread or altered")


_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date(name: str, value: str, *, unknown_allowed: bool) -> str:
    if unknown_allowed and "<" in value:
        parts = [value[0:2], value[2:4], value[4:6]]
        if any(part not in ("<<",) and not part.isdigit() for part in parts):
            raise MRZError(name, f"{value!r} is not YYMMDD (unknown parts must be whole, "
                                 "as <<)")
        month = int(parts[1]) if parts[1].isdigit() else None
        day = int(parts[2]) if parts[2].isdigit() else None
    else:
        if not value.isdigit():
            raise MRZError(name, f"{value!r} is not a date YYMMDD")
        month, day = int(value[2:4]), int(value[4:6])
    if month is not None and not 1 <= month <= 12:
        raise MRZError(name, f"{value!r}: month {month:02d} does not exist")
    if day is not None and not 1 <= day <= (_DAYS[month - 1] if month else 31):
        raise MRZError(name, f"{value!r}: day {day:02d} does not exist in that month")
    return value


def _sex(value: str) -> str:
    if value not in "MFX<":
        raise MRZError("sex", f"{value!r} must be M, F, X or < (unspecified)")
    return "" if value == "<" else value


def _names(value: str) -> tuple[str, str]:
    field = _strip(value)
    if not field:
        raise MRZError("name", "empty: the name field holds only fillers")
    if field.startswith("<"):
        raise MRZError("name", f"{value!r} does not start with the primary identifier")
    primary, _, secondary = field.partition("<<")
    return (" ".join(p for p in primary.split("<") if p),
            " ".join(p for p in secondary.split("<") if p))


def _number(number_field: str, check: str, optional: str) -> tuple[str, str]:
    """(complete document number, the rest of the optional data), long numbers joined."""
    if check != "<":
        _check("document_number", number_field, check)
        number = _strip(number_field)
        rest = optional
    else:
        run = optional.split("<", 1)[0]
        if "<" in number_field or len(run) < 2:
            raise MRZError("document_number", "check digit missing (< where a digit belongs, "
                                              "and no continuation of a long number)")
        number = number_field + run[:-1]
        _check("document_number", number, run[-1])
        rest = optional[len(run) + 1:]
    if not number or "<" in number:
        raise MRZError("document_number", f"{number_field!r} is not a document number")
    return number, _strip(rest).lstrip("<")


def parse(text: str) -> MachineReadableZone:
    """Parse and validate an MRZ: its lines separated by line breaks, or all in one run.

    Lower-case letters and spaces around lines are forgiven (a typed MRZ); anything else
    that breaks the rules raises `MRZError`."""
    lines = _lines(text)
    if len(lines) == 3:
        return _parse_td1(*lines)
    first, second = lines
    wide = len(first) == 44
    if first[0] == "V":
        return _parse_two_lines(first, second, "MRV-A" if wide else "MRV-B")
    return _parse_two_lines(first, second, "TD3" if wide else "TD2")


def _parse_td1(l1: str, l2: str, l3: str) -> MachineReadableZone:
    code = _code(l1[0:2], "ACI", "TD1")
    state = _state("issuing_state", l1[2:5])
    number, optional = _number(l1[5:14], l1[14], l1[15:30])
    birth = _date("birth_date", l2[0:6], unknown_allowed=True)
    _check("birth_date", l2[0:6], l2[6])
    sex = _sex(l2[7])
    expiry = _date("expiry_date", l2[8:14], unknown_allowed=False)
    _check("expiry_date", l2[8:14], l2[14])
    nationality = _state("nationality", l2[15:18])
    _check("composite", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29])
    primary, secondary = _names(l3)
    return MachineReadableZone("TD1", code, state, number, primary, secondary, nationality,
                               birth, sex, expiry, optional, _strip(l2[18:29]))


def _parse_two_lines(l1: str, l2: str, form: str) -> MachineReadableZone:
    """TD2, TD3 and the visas: the same first line, and the same second line up to the
    date of expiry's check digit (position 28); they differ after it."""
    code = _code(l1[0:2], {"TD3": "P", "TD2": "ACI"}.get(form, "V"), form)
    state = _state("issuing_state", l1[2:5])
    primary, secondary = _names(l1[5:])
    if form == "TD2":  # the only two-line format with long document numbers
        number, optional = _number(l2[0:9], l2[9], l2[28:35])
    else:
        if l2[9] == "<" and "<" not in l2[0:9]:
            raise MRZError("document_number", "check digit missing (a passport or visa "
                                              "number has at most nine characters)")
        number, _ = _number(l2[0:9], l2[9], "")
        optional = _strip(l2[28:42] if form == "TD3" else l2[28:])
    nationality = _state("nationality", l2[10:13])
    birth = _date("birth_date", l2[13:19], unknown_allowed=True)
    _check("birth_date", l2[13:19], l2[19])
    sex = _sex(l2[20])
    expiry = _date("expiry_date", l2[21:27], unknown_allowed=False)
    _check("expiry_date", l2[21:27], l2[27])
    if form == "TD3":
        _check("optional_data", l2[28:42], l2[42], empty_may_skip=True)
        _check("composite", l2[0:10] + l2[13:20] + l2[21:43], l2[43])
    elif form == "TD2":
        _check("composite", l2[0:10] + l2[13:20] + l2[21:35], l2[35])
    return MachineReadableZone(form, code, state, number, primary, secondary, nationality,
                               birth, sex, expiry, optional)


# --- composing ----------------------------------------------------------------------

_WIDTH = {"TD1": 30, "TD2": 36, "TD3": 44, "MRV-A": 44, "MRV-B": 36}


def _field(name: str, value: str, width: int) -> str:
    value = value.upper()
    if not _ALLOWED.fullmatch(value):
        raise MRZError(name, f"{value!r} holds characters other than A-Z, 0-9 and <")
    if len(value) > width:
        raise MRZError(name, f"{value!r} is longer than the {width} characters it may take")
    return value.ljust(width, "<")


def _name_field(zone: MachineReadableZone, width: int) -> str:
    """Primary and secondary identifiers, components joined by <, cut to fit (the last
    resort of Part 3's truncation rules: the MRZ cannot grow)."""
    parts = []
    for name, value in (("primary_identifier", zone.primary_identifier),
                        ("secondary_identifier", zone.secondary_identifier)):
        words = value.upper().replace("-", " ").replace("'", "").split()
        for word in words:
            if not word.isascii() or not word.isalpha():
                raise MRZError(name, f"{value!r}: transliterate to A-Z first (ICAO 9303 "
                                     "Part 3, section 6)")
        parts.append("<".join(words))
    if not parts[0]:
        raise MRZError("primary_identifier", "empty")
    text = parts[0] + ("<<" + parts[1] if parts[1] else "")
    return text[:width].ljust(width, "<")


def compose(zone: MachineReadableZone) -> str:
    """The MRZ of `zone`, check digits computed (lines joined by newlines). The result is
    parsed back before it is returned, so a field that breaks a rule (a date that does
    not exist, say) raises `MRZError` here rather than producing an MRZ no reader takes."""
    text = _compose(zone)
    parse(text)
    return text


def _compose(zone: MachineReadableZone) -> str:
    form = zone.format
    if form not in _WIDTH:
        raise MRZError("format", f"{form!r}: one of {', '.join(FORMATS)}")
    width = _WIDTH[form]
    sex = zone.sex or "<"
    if sex not in "MFX<" or len(sex) != 1:
        raise MRZError("sex", f"{zone.sex!r} must be M, F, X or empty")
    code = _field("document_code", zone.document_code, 2)
    state = _field("issuing_state", zone.issuing_state, 3)
    nationality = _field("nationality", zone.nationality, 3)
    birth = _field("birth_date", zone.birth_date, 6)
    expiry = _field("expiry_date", zone.expiry_date, 6)
    number = zone.document_number.upper()
    _field("document_number", number, 30)
    long_number = len(number) > 9
    if long_number and form not in ("TD1", "TD2"):
        raise MRZError("document_number", f"{number!r}: a {form} number has at most nine "
                                          "characters")
    if long_number:
        number_part = number[:9] + "<"
        overflow = number[9:] + check_digit(number) + "<"
    else:
        padded = _field("document_number", number, 9)
        number_part, overflow = padded + check_digit(padded), ""
    if form == "TD1":
        optional = _field("optional_data", overflow + zone.optional_data.upper(), 15)
        optional_2 = _field("optional_data_2", zone.optional_data_2, 11)
        line1 = code + state + number_part + optional
        line2 = (birth + check_digit(birth) + sex + expiry + check_digit(expiry)
                 + nationality + optional_2)
        line2 += check_digit(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
        line3 = _name_field(zone, 30)
        return "\n".join((line1, line2, line3))
    if zone.optional_data_2:
        raise MRZError("optional_data_2", f"{form} has one optional data field")
    line1 = code + state + _name_field(zone, width - 5)
    line2 = (number_part + nationality + birth + check_digit(birth) + sex + expiry
             + check_digit(expiry))
    if form == "TD3":
        optional = _field("optional_data", zone.optional_data, 14)
        line2 += optional + ("<" if set(optional) == {"<"} else check_digit(optional))
        line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    elif form == "TD2":
        line2 += _field("optional_data", overflow + zone.optional_data.upper(), 7)
        line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:35])
    else:  # visas
        line2 += _field("optional_data", zone.optional_data, width - 28)
    return "\n".join((line1, line2))
