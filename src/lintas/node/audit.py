"""The node's audit trail: entries of `lintas.audit.chain`, stored in its database.

`AuditLog.record(session, ...)` appends inside the caller's transaction, so that an
action and its entry commit together or not at all; `append` does it in a transaction of
its own. Every append first locks the single `audit_head` row, so concurrent appends
(several worker processes on one PostgreSQL database) queue up and the chain never
forks. Nothing here deletes or updates an entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lintas.audit import AuditEntry, Verification, Witness, seal, verify
from lintas.audit.chain import Detail
from lintas.node.models import AuditHead, AuditRecord
from lintas.storage import Database, utcnow


def _entry(row: AuditRecord) -> AuditEntry:
    return AuditEntry(row.seq, row.at, row.actor, row.role, row.action, row.outcome,
                      row.purpose, row.agreement, tuple(json.loads(row.message_ids)),
                      json.loads(row.details), row.previous, row.digest)


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, session: Session, actor: str, role: str, action: str, outcome: str,
               purpose: str | None = None, agreement: str | None = None,
               message_ids: Iterable[str] = (), details: Mapping[str, Detail] | None = None,
               at: datetime | None = None) -> AuditEntry:
        """Append an entry in `session`'s transaction (committed with it)."""
        head = session.scalars(select(AuditHead).where(AuditHead.id == 1)
                               .with_for_update()).one()
        entry = seal(head.seq + 1, head.digest, at or utcnow(), actor, role, action, outcome,
                     purpose, agreement, message_ids, details)
        session.add(AuditRecord(
            seq=entry.seq, at=entry.at, actor=entry.actor, role=entry.role,
            action=entry.action, outcome=entry.outcome, purpose=entry.purpose,
            agreement=entry.agreement, message_ids=json.dumps(list(entry.message_ids)),
            details=json.dumps(dict(entry.details), sort_keys=True),
            previous=entry.previous, digest=entry.digest))
        head.seq, head.digest = entry.seq, entry.digest
        session.flush()
        return entry

    def append(self, actor: str, role: str, action: str, outcome: str,
               **fields: object) -> AuditEntry:
        """`record` in a transaction of its own."""
        with self.db.session() as s:
            return self.record(s, actor, role, action, outcome, **fields)  # type: ignore[arg-type]

    def head(self) -> Witness | None:
        """The last entry's number and digest: what the node publishes to the hub."""
        with self.db.session() as s:
            row = s.get(AuditHead, 1)
            return None if row is None or row.seq == 0 else Witness(row.seq, row.digest)

    def entries(self, batch: int = 1000) -> Iterator[AuditEntry]:
        """Every entry in sequence order, read in batches (the log may be long)."""
        after = 0
        while True:
            with self.db.session() as s:
                rows = list(s.scalars(select(AuditRecord).where(AuditRecord.seq > after)
                                      .order_by(AuditRecord.seq).limit(batch)))
            if not rows:
                return
            yield from (_entry(row) for row in rows)
            after = rows[-1].seq

    def verify(self, witnesses: Iterable[Witness] = ()) -> Verification:
        return verify(self.entries(), witnesses)

    def page(self, limit: int = 50, before: int | None = None,
             action: str | None = None) -> list[AuditEntry]:
        """Entries newest first: at most `limit`, numbered below `before` (the next page
        of a listing), whose action is `action` or starts with `action.` (e.g. "check")."""
        query = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRecord.seq < before)
        if action:
            query = query.where((AuditRecord.action == action)
                                | AuditRecord.action.startswith(action + ".", autoescape=True))
        with self.db.session() as s:
            return [_entry(row) for row in s.scalars(query)]
