"""The policy framework: bilateral agreements and the rules no agreement overrides.

Pure domain logic (no database, no web): the hub and the nodes store what it decides.
"""

from lintas.policy.agreements import (
    DATA_CATEGORIES,
    PURPOSES,
    QUERY_TYPES,
    RESPONSE_MODES,
    Agreement,
    AgreementError,
    Direction,
    SignedAgreement,
    StatusNotice,
    countersign,
    effective_state,
    propose,
    status_notice,
    verify,
    verify_status,
)

__all__ = [
    "DATA_CATEGORIES", "PURPOSES", "QUERY_TYPES", "RESPONSE_MODES", "Agreement",
    "AgreementError", "Direction", "SignedAgreement", "StatusNotice", "countersign",
    "effective_state", "propose", "status_notice", "verify", "verify_status",
]
