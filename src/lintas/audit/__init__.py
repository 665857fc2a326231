"""The audit trail (domain layer): an append-only, hash-chained log of every action,
witnessed by the hub. `chain` holds the rules; the node stores the entries."""

from lintas.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditError,
    Problem,
    Verification,
    Witness,
    seal,
    verify,
)

__all__ = ["GENESIS", "AuditEntry", "AuditError", "Problem", "Verification", "Witness",
           "seal", "verify"]
