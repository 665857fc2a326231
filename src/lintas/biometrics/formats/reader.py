"""Bounds-checked big-endian reading: a bad record is an error naming the field and the
byte offset, never an IndexError or a hang."""

from __future__ import annotations


class TemplateFormatError(ValueError):
    """A record that does not follow its standard. `offset` is where reading failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class Reader:
    def __init__(self, data: bytes, end: int | None = None) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data) if end is None else end

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > self.end:
            raise TemplateFormatError(f"record ends inside {field}", self.pos)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def fail(self, message: str) -> TemplateFormatError:
        return TemplateFormatError(message, self.pos)
