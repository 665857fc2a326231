"""The hub as witness of the members' audit trails (docs/audit.md).

A node publishes its chain head (the number and digest of its last audit entry) at
intervals; the hub keeps every head it is given. A head never goes back and never
changes: a head below one already witnessed, or a different digest for a number already
witnessed, is refused (`audit_head_conflict`), because it means the node's history was
cut or rewritten. The hub learns nothing of the entries themselves: a digest and a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lintas.hub.models import AuditWitness
from lintas.protocol import errors as e
from lintas.storage import Database, utcnow

_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_SEQ = 2**31 - 1


@dataclass(frozen=True)
class WitnessedHead:
    seq: int
    digest: str
    received_at: datetime


def _check(seq: object, digest: object) -> tuple[int, str]:
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise e.InvalidBody(f"seq: a whole number from 1 to {MAX_SEQ}")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise e.InvalidBody("digest: 64 lower-case hexadecimal digits (SHA-256)")
    return seq, digest


def record(db: Database, member: str, seq: object, digest: object,
           now: datetime | None = None) -> WitnessedHead:
    """Witness `member`'s head; idempotent for a head already witnessed."""
    seq, digest = _check(seq, digest)
    now = now or utcnow()
    try:
        with db.session() as s:
            known = s.get(AuditWitness, (member, seq))
            if known is not None:
                if known.digest != digest:
                    raise e.AuditHeadConflict(
                        f"entry {seq} was witnessed with another digest on "
                        f"{known.received_at:%Y-%m-%d %H:%M} UTC: the audit trail was rewritten")
                return WitnessedHead(known.seq, known.digest, known.received_at)
            highest = s.scalar(select(func.max(AuditWitness.seq))
                               .where(AuditWitness.member == member))
            if highest is not None and seq < highest:
                raise e.AuditHeadConflict(f"entry {seq} is behind the witnessed head {highest}: "
                                          "the audit trail was cut")
            s.add(AuditWitness(member=member, seq=seq, digest=digest, received_at=now))
    except IntegrityError:  # the same head from two hub processes at once
        return record(db, member, seq, digest, now)
    return WitnessedHead(seq, digest, now)


def heads(db: Database, member: str, after: int = 0, limit: int = 1000) -> list[WitnessedHead]:
    """`member`'s witnessed heads with a number above `after`, in order."""
    with db.session() as s:
        rows = s.scalars(select(AuditWitness)
                         .where(AuditWitness.member == member, AuditWitness.seq > after)
                         .order_by(AuditWitness.seq).limit(limit))
        return [WitnessedHead(r.seq, r.digest, r.received_at) for r in rows]
