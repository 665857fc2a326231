"""The hub as witness of the members' audit trails, through real HTTP on loopback (SQLite
and PostgreSQL): heads published, kept, never moved back or changed, read back only by
their member; and a node's trail checked against them."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from lintas.audit import Witness
from lintas.protocol import errors as e
from tests.conftest import HubFixture


def act(node, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        node.audit.append("officer", "officer", "check.submitted", "accepted",
                          details={"i": i})


def test_heads_are_witnessed_and_a_cut_or_rewritten_trail_is_exposed(
        hub: HubFixture, make_node) -> None:  # type: ignore[no-untyped-def]
    aus = make_node("AUS")
    with hub.client(aus) as client:
        assert aus.publish_audit_head(client) is None  # nothing to witness yet
        act(aus, 3)
        head = aus.publish_audit_head(client)
        assert head is not None and head.seq == 3
        assert aus.publish_audit_head(client) == head  # unchanged: idempotent
        act(aus, 2)
        aus.publish_audit_head(client)
        assert [seq for seq, _ in client.audit_heads()] == [3, 5]
        assert aus.verify_audit(client).intact
        # The node cuts its last two entries and their head: locally nothing shows...
        with aus.db.connection() as c:
            c.execute(text("DELETE FROM audit_log WHERE seq > 3"))
            c.execute(text(f"UPDATE audit_head SET seq = 3, digest = '{head.digest}'"))
        assert aus.audit.verify().intact
        # ...but against the witness it does, and the hub refuses a head that goes back.
        assert [(p.seq, p.kind) for p in aus.verify_audit(client).problems] == [
            (5, "truncated")]
        act(aus, 1)  # entry 4 again, with another digest than the witnessed chain's
        with pytest.raises(e.AuditHeadConflict, match="behind the witnessed head 5"):
            client.publish_audit_head(4, aus.audit.head().digest)  # type: ignore[union-attr]
        with pytest.raises(e.AuditHeadConflict, match="another digest"):
            client.publish_audit_head(3, "f" * 64)


def test_each_member_reads_only_its_own_heads_and_bad_heads_are_refused(
        hub: HubFixture, make_node) -> None:  # type: ignore[no-untyped-def]
    aus, idn = make_node("AUS"), make_node("IDN")
    act(aus, 2)
    with hub.client(aus) as a, hub.client(idn) as i:
        aus.publish_audit_head(a)
        assert len(a.audit_heads()) == 1 and i.audit_heads() == []
        with pytest.raises(e.BadRequest, match=r"body\.digest"):
            a.publish_audit_head(3, "XYZ")
        with pytest.raises(e.BadRequest, match=r"body\.seq"):
            a.publish_audit_head(0, "a" * 64)
        assert Witness(2, aus.audit.head().digest) in [  # type: ignore[union-attr]
            Witness(s, d) for s, d in a.audit_heads()]
    # No signature, no witness.
    answer = httpx.post(f"{hub.url}/v1/audit/heads", json={"seq": 1, "digest": "a" * 64})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
