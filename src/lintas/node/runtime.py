"""The node's engine: keys, directory, durable outbox, idempotent inbox.

Synchronous and free of HTTP-server concerns so that tests and the server's background
loops drive the same code. Delivery is at-least-once from the hub; handling is
exactly-once here because the inbox insert and any reply it triggers commit in one
transaction keyed by the message id, and the hub is acknowledged only after that commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lintas.audit import Verification, Witness
from lintas.crypto import KeyPair, generate, load_public, seal_private, unseal_private
from lintas.node.audit import AuditLog
from lintas.node.hub_client import HubClient, HubUnavailable
from lintas.node.models import (
    DirectoryCache,
    InboxMessage,
    NodeKey,
    OutboxMessage,
    RejectedEnvelope,
    Setting,
)
from lintas.node.users import Principal, Users, add_first_admin
from lintas.protocol import errors as e
from lintas.protocol.directory import Directory, verify_directory
from lintas.protocol.envelope import (
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    OpenedMessage,
    RoutingHeader,
    open_payload,
    parse,
    seal,
    verify_signature,
)
from lintas.protocol.keyfile import member_key_document
from lintas.protocol.members import member_kind
from lintas.storage import Database, utcnow

log = logging.getLogger("lintas.node")

MAX_BACKOFF_S = 300.0
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]


class NodeError(Exception):
    """An operator-facing problem with the node's set-up or a request to it."""


class MessageHandler(Protocol):
    """What a workflow (agreements, checks) registers for a message type it handles."""

    def redact(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as it may be kept in the inbox (a probe never is)."""

    def handle(self, session: Any, message: OpenedMessage) -> None:
        """Act on a new message inside the receiving transaction (replies go to the
        outbox in the same transaction); raise ProtocolError to refuse it."""


@dataclass(frozen=True)
class InitResult:
    member: str
    public_keys: dict[str, Any]
    api_token: str
    hub_fingerprint: str


def init_node(db: Database, member: str, hub_url: str, hub_jwk: dict[str, Any],
              passphrase: str) -> InitResult:
    """Create the node's keys and settings in a migrated, empty database."""
    from lintas.crypto import fingerprint

    member_kind(member)
    hub_key = load_public(hub_jwk, "sig")
    now = utcnow()
    sig, enc = generate("sig"), generate("enc")
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(Setting, "member") is not None:
            raise NodeError("this node is already initialised; its keys are never replaced by init")
        for pair in (sig, enc):
            s.add(NodeKey(kid=pair.kid, use=pair.use, public_jwk=json.dumps(pair.public_jwk()),
                          private_sealed=seal_private(pair, passphrase), created_at=now))
        s.add_all([
            Setting(key="member", value=member),
            Setting(key="hub_url", value=hub_url.rstrip("/")),
            Setting(key="hub_jwk", value=json.dumps(hub_key.as_dict(private=False))),
        ])
        add_first_admin(s, token)
    return InitResult(member, member_key_document(member, sig.public_jwk(), enc.public_jwk()),
                      token, fingerprint(hub_key))


def rotate_node_keys(db: Database, passphrase: str) -> dict[str, Any]:
    """Make a new key pair set; it is used once the hub's directory lists it."""
    now = utcnow()
    sig, enc = generate("sig"), generate("enc")
    with db.session() as s:
        member = s.get(Setting, "member")
        if member is None:
            raise NodeError("the node is not initialised: run `lintas node init`")
        # Check the passphrase before writing anything.
        existing = s.scalars(select(NodeKey)).first()
        if existing is not None:
            unseal_private(existing.private_sealed, existing.use, passphrase)  # type: ignore[arg-type]
        for pair in (sig, enc):
            s.add(NodeKey(kid=pair.kid, use=pair.use, public_jwk=json.dumps(pair.public_jwk()),
                          private_sealed=seal_private(pair, passphrase), created_at=now))
        return member_key_document(member.value, sig.public_jwk(), enc.public_jwk())


class Node:
    def __init__(self, db: Database, passphrase: str) -> None:
        self.db = db
        with db.session() as s:
            settings = {row.key: row.value for row in s.scalars(select(Setting))}
            if "member" not in settings:
                raise NodeError("the node is not initialised: run `lintas node init`")
        self.member = settings["member"]
        self.hub_url = settings["hub_url"]
        self.hub_key = load_public(json.loads(settings["hub_jwk"]), "sig")
        # Kept in memory (like the keys it unlocks) so that keys made by `lintas node
        # rotate-key` while the node runs are picked up without a restart.
        self._passphrase = passphrase
        self.keys: list[KeyPair] = []
        self.decryption_keys: dict[str, KeyPair] = {}
        self.load_keys()
        self._directory: Directory | None = self._cached_directory()
        self.last_contact: datetime | None = None
        self.last_error: str | None = None
        self.audit = AuditLog(db)
        self.users = Users(db, self.audit)
        self.witnessed: Witness | None = None  # the last head the hub confirmed
        # message type -> the workflow that acts on it (lintas.node.agreements, .checks)
        self.handlers: dict[str, MessageHandler] = {}

    # --- audit trail ------------------------------------------------------------------

    def publish_audit_head(self, client: HubClient) -> Witness | None:
        """Have the hub witness our audit chain head, if it moved since the last time."""
        head = self.audit.head()
        if head is not None and head != self.witnessed:
            client.publish_audit_head(head.seq, head.digest)
            self.witnessed = head
        return head

    def verify_audit(self, client: HubClient | None = None) -> Verification:
        """Verify our audit trail, against the heads the hub witnessed when `client` is
        given (the only way to catch a trail cut short or rewritten from some point on)."""
        witnesses = ([Witness(seq, digest) for seq, digest in client.audit_heads()]
                     if client is not None else [])
        return self.audit.verify(witnesses)

    # --- API users --------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal | None:
        """The active user holding this API token, or None (`lintas.node.users`)."""
        return self.users.authenticate(token)

    # --- keys and directory -----------------------------------------------------------

    def load_keys(self) -> bool:
        """Unlock any of our keys not yet in memory; True if there were new ones."""
        known = {k.kid for k in self.keys}
        with self.db.session() as s:
            rows = s.scalars(select(NodeKey).where(NodeKey.kid.not_in(known))
                             .order_by(NodeKey.created_at)).all()
        fresh = [unseal_private(r.private_sealed, r.use, self._passphrase)  # type: ignore[arg-type]
                 for r in rows]
        self.keys = [*self.keys, *fresh]
        self.decryption_keys = {k.kid: k for k in self.keys if k.use == "enc"}
        return bool(fresh)

    def signing_key(self) -> KeyPair:
        """The newest of our signing keys that the directory lists as valid now (keys are
        loaded oldest first, so the last one listed wins)."""
        sig_keys = [k for k in self.keys if k.use == "sig"]
        d = self._directory
        me = d.members.get(self.member) if d else None
        if me is not None:
            now = utcnow()
            for key in reversed(sig_keys):
                if me.key(key.kid, "sig", now) is not None:
                    return key
        return sig_keys[0]

    def _cached_directory(self) -> Directory | None:
        with self.db.session() as s:
            row = s.get(DirectoryCache, 1)
            return verify_directory(row.document, self.hub_key) if row else None

    def directory(self) -> Directory:
        if self._directory is None:
            raise NodeError("no member directory yet: the hub has not been reached")
        return self._directory

    def refresh_directory(self, client: HubClient) -> Directory:
        document = client.directory()
        fresh = verify_directory(document, self.hub_key)
        if self._directory is not None and fresh.issued_at < self._directory.issued_at:
            raise e.DirectoryError("the hub sent an older directory than the one held; ignored")
        now = utcnow()
        with self.db.session() as s:
            row = s.get(DirectoryCache, 1)
            if row is None:
                s.add(DirectoryCache(id=1, document=document, issued_at=fresh.issued_at,
                                     fetched_at=now))
            else:
                row.document, row.issued_at, row.fetched_at = document, fresh.issued_at, now
        self._directory = fresh
        self.last_contact = now
        me = fresh.members.get(self.member)
        if me is not None and {k.kid for k in me.keys} - {k.kid for k in self.keys}:
            self.load_keys()  # the hub lists keys made by `node rotate-key` since we started
        return fresh

    # --- outbox -----------------------------------------------------------------------

    def _peer(self, recipient: str) -> Any:
        peer = self._directory.members.get(recipient) if self._directory else None
        if peer is None:
            # A member onboarded since our last refresh: look again once.
            client = HubClient(self.hub_url)
            try:
                self.refresh_directory(client)
            finally:
                client.close()
            peer = self.directory().members.get(recipient)
        return peer

    def _seal(self, message_type: str, recipient: str, body: dict[str, Any],
              in_reply_to: str | None, lifetime: timedelta,
              agreement: str | None = None) -> tuple[RoutingHeader, str]:
        peer = self._peer(recipient)
        if peer is None:
            raise e.UnknownRecipient(f"to: {recipient} is not in the member directory")
        if not peer.active:
            raise e.RecipientSuspended(f"to: {recipient} is suspended")
        now = utcnow()
        enc = peer.current_encryption_key(now)
        if enc is None:
            raise e.UnknownKey(f"to: {recipient} has no valid encryption key")
        header = RoutingHeader.new(message_type, self.member, recipient, now, lifetime,
                                   agreement=agreement, in_reply_to=in_reply_to)
        return header, seal(header, body, self.signing_key(), enc.public())

    @staticmethod
    def _outbox_values(header: RoutingHeader, envelope: str) -> dict[str, Any]:
        return {"id": header.id, "recipient": header.recipient, "type": header.type,
                "envelope": envelope, "created_at": header.created,
                "expires_at": header.expires, "status": "queued", "attempts": 0,
                "next_attempt_at": header.created}

    def _outbox_row(self, header: RoutingHeader, envelope: str) -> OutboxMessage:
        return OutboxMessage(**self._outbox_values(header, envelope))

    def enqueue(self, message_type: str, recipient: str, body: dict[str, Any],
                in_reply_to: str | None = None, lifetime: timedelta = DEFAULT_LIFETIME) -> str:
        header, envelope = self._seal(message_type, recipient, body, in_reply_to, lifetime)
        with self.db.connection() as conn:
            # A Core INSERT: the ORM session costs more than the row on this hot path.
            conn.execute(insert(OUTBOX), [self._outbox_values(header, envelope)])
        return header.id

    def queue(self, session: Any, message_type: str, recipient: str, body: dict[str, Any],
              in_reply_to: str | None = None, agreement: str | None = None,
              lifetime: timedelta = DEFAULT_LIFETIME) -> str:
        """Seal a message and put it in the outbox inside the caller's transaction, so
        that it leaves if and only if the action that sends it commits."""
        header, envelope = self._seal(message_type, recipient, body, in_reply_to, lifetime,
                                      agreement)
        session.add(self._outbox_row(header, envelope))
        return header.id

    def send_due(self, client: HubClient, limit: int = 100) -> int:
        """Send what is due, as one batch; returns how many the hub accepted. If the hub
        cannot be reached, the whole batch backs off and waits for the next round."""
        now = utcnow()
        with self.db.session() as s:
            due = s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.next_attempt_at).limit(limit)
            ).all()
        if not due:
            return 0
        updates: dict[str, dict[str, Any]] = {}
        live = []
        for msg in due:
            if msg.expires_at <= now:
                updates[msg.id] = {"status": "expired",
                                   "last_error": "expired before the hub accepted it"}
            else:
                live.append(msg)
        if live:
            try:
                outcomes = client.submit_batch([m.envelope for m in live])
            except HubUnavailable as exc:
                self.last_error = str(exc)
                for msg in live:
                    delay = min(MAX_BACKOFF_S,
                                0.5 * 2 ** msg.attempts * random.uniform(0.8, 1.2))
                    updates[msg.id] = {"last_error": str(exc),
                                       "next_attempt_at": now + timedelta(seconds=delay)}
            else:
                sent_at = utcnow()
                self.last_contact = sent_at
                for msg, err in zip(live, outcomes, strict=True):
                    # A duplicate means an earlier attempt reached the hub but its answer
                    # was lost: the message is sent.
                    if err is None or isinstance(err, e.DuplicateMessage):
                        updates[msg.id] = {"status": "sent", "sent_at": sent_at,
                                           "last_error": None}
                    else:
                        updates[msg.id] = {"status": "failed",
                                           "last_error": f"{err.code}: {err.message}"}
                        log.warning("outbox id=%s to=%s refused: %s", msg.id, msg.recipient,
                                    updates[msg.id]["last_error"])
        rows = [{"id": m.id, "attempts": m.attempts + 1, **updates[m.id]} for m in due]
        with self.db.session() as s:
            s.execute(update(OutboxMessage), rows)  # bulk UPDATE by primary key
        return sum(1 for u in updates.values() if u.get("status") == "sent")

    def next_due(self) -> datetime | None:
        with self.db.session() as s:
            return s.scalar(select(func.min(OutboxMessage.next_attempt_at))
                            .where(OutboxMessage.status == "queued"))

    # --- inbox ------------------------------------------------------------------------

    def poll(self, client: HubClient, wait: float = 20.0, limit: int = 100) -> int:
        """Fetch from our mailbox, handle each envelope once, then acknowledge."""
        items = client.mailbox(wait, limit)
        self.last_contact = utcnow()
        if not items:
            return 0
        handled = self.handle(items, client)
        client.ack([item["id"] for item in items])
        return handled

    def handle(self, items: list[dict[str, str]], client: HubClient | None = None) -> int:
        """Receive a batch from the mailbox in one transaction; returns how many were new.

        After this returns, all of the batch may be acknowledged: each envelope was stored,
        was a duplicate, or was rejected and recorded.
        """
        opened, rejects = [], []
        for item in items:
            result = self._open(item["envelope"], client)
            if isinstance(result, RejectedEnvelope):
                rejects.append(result)
            else:
                opened.append(result)
        try:
            return self._commit(opened, rejects)
        except IntegrityError:
            # Another process of this node stored some of them meanwhile: one by one.
            new = 0
            for o in opened:
                with contextlib.suppress(IntegrityError):
                    new += self._commit([o], [])
            if rejects:
                self._commit([], rejects)
            return new

    def receive(self, raw: str, client: HubClient | None = None) -> bool:
        """Verify, decrypt and store one envelope. True if it was new and accepted; False
        if it was a duplicate or was refused (the refusal is recorded, without content)."""
        return self.handle([{"envelope": raw}], client) == 1

    def _open(self, raw: str, client: HubClient | None) -> Any:
        msg_id, sender = "?", None
        try:
            parsed = parse(raw)
            msg_id, sender = parsed.header.id, parsed.header.sender
            if parsed.header.recipient != self.member:
                raise e.PayloadMismatch(f"to: addressed to {parsed.header.recipient}, not us")
            if parsed.header.expires + CLOCK_SKEW < utcnow():
                raise e.Expired(f"message {msg_id} expired before it reached us")
            key = self._sender_key(parsed.header.sender, parsed.kid, client)
            verify_signature(parsed, key)
            try:
                opened = open_payload(parsed, self.decryption_keys)
            except e.UndecryptablePayload:
                if not self.load_keys():  # encrypted to a key rotated in since start-up?
                    raise
                opened = open_payload(parsed, self.decryption_keys)
        except e.ProtocolError as exc:
            log.warning("rejected id=%s from=%s code=%s", msg_id, sender, exc.code)
            return RejectedEnvelope(message_id=msg_id[:36], claimed_sender=sender,
                                    code=exc.code, reason=exc.message[:500], at=utcnow())
        return opened, self._reply_to(opened)

    def _reply_to(self, opened: Any) -> tuple[RoutingHeader, str] | None:
        """The automatic pong to a ping. If it cannot be sealed, the ping is still kept."""
        if opened.header.type != "diagnostic.ping" or not opened.body.get("reply", True):
            return None
        text = f"pong from {self.member}: {opened.body['text'][:200]}"
        try:
            return self._seal("diagnostic.pong", opened.header.sender, {"text": text},
                              opened.header.id, DEFAULT_LIFETIME)
        except (e.ProtocolError, NodeError) as exc:
            log.warning("no pong to %s for %s: %s", opened.header.sender, opened.header.id, exc)
            return None

    def _dispatch(self, s: Any, handler: MessageHandler, o: OpenedMessage) -> None:
        """Run a workflow's handler in the receiving transaction, under a savepoint: if
        it refuses the message, its half-done work is undone and the refusal recorded
        (the message itself stays in the inbox, redacted)."""
        try:
            with s.begin_nested():
                handler.handle(s, o)
        except (e.ProtocolError, NodeError) as exc:
            code = exc.code if isinstance(exc, e.ProtocolError) else "node_error"
            log.warning("handler refused id=%s type=%s: %s", o.header.id, o.header.type, exc)
            s.add(RejectedEnvelope(message_id=o.header.id, claimed_sender=o.header.sender,
                                   code=code, reason=str(exc)[:500], at=utcnow()))

    def _commit(self, opened: list[Any], rejects: list[RejectedEnvelope]) -> int:
        if not opened and not rejects:
            return 0
        now = utcnow()
        new = 0
        with self.db.session() as s:
            ids = [o.header.id for o, _ in opened]
            known = set(s.scalars(select(InboxMessage.id).where(InboxMessage.id.in_(ids))))
            for o, reply in opened:
                h = o.header
                if h.id in known:
                    continue  # at-least-once delivery, exactly-once handling
                known.add(h.id)
                handler = self.handlers.get(h.type)
                stored = handler.redact(o.body) if handler is not None else o.body
                s.add(InboxMessage(
                    id=h.id, sender=h.sender, type=h.type,
                    body=json.dumps(stored, ensure_ascii=False), created_at=h.created,
                    received_at=now, in_reply_to=h.in_reply_to, agreement=h.agreement,
                ))
                if reply is not None:
                    s.add(self._outbox_row(*reply))
                if handler is not None:
                    self._dispatch(s, handler, o)
                new += 1
                log.info("received id=%s from=%s type=%s", h.id, h.sender, h.type)
            s.add_all(rejects)
        return new

    def _sender_key(self, sender: str, kid: str, client: HubClient | None) -> Any:
        now = utcnow()
        for attempt in range(2):
            d = self._directory
            member = d.members.get(sender) if d else None
            if member is not None:
                if not member.active:
                    raise e.SenderSuspended(f"{sender} is suspended")
                key = member.key(kid, "sig", now, skew=CLOCK_SKEW)
                if key is not None:
                    return key.public()
            if attempt == 0 and client is not None:
                try:
                    self.refresh_directory(client)  # a new member or a rotated key
                except e.DirectoryError as exc:
                    # e.g. another hub process's clock is behind: keep the held directory.
                    log.warning("directory refresh ignored: %s", exc)
        raise e.UnknownKey(f"{kid} is not a valid signing key of {sender}")

    # --- views ------------------------------------------------------------------------

    def inbox(self, limit: int = 50) -> list[InboxMessage]:
        with self.db.session() as s:
            return list(s.scalars(select(InboxMessage)
                                  .order_by(InboxMessage.received_at.desc()).limit(limit)))

    def outbox(self, limit: int = 50) -> list[OutboxMessage]:
        with self.db.session() as s:
            return list(s.scalars(select(OutboxMessage)
                                  .order_by(OutboxMessage.created_at.desc()).limit(limit)))

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(OutboxMessage.status, func.count())
                             .group_by(OutboxMessage.status)).all()
            inbox = s.scalar(select(func.count()).select_from(InboxMessage)) or 0
            rejected = s.scalar(select(func.count()).select_from(RejectedEnvelope)) or 0
        out = {f"outbox_{status}": int(n) for status, n in rows}
        return {"inbox": int(inbox), "rejected": int(rejected), **out}
