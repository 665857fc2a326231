"""The exchange of identity checks between members (domain layer). `workflow` holds the
two state machines of a check, the requester's and the responder's; the node stores the
records and sends the envelopes."""

from lintas.exchange.workflow import (
    MACHINES,
    REQUESTER,
    RESPONDER,
    STATE_COLUMN_LEN,
    STATES_MAX_LEN,
    IllegalTransition,
    Machine,
)

__all__ = ["MACHINES", "REQUESTER", "RESPONDER", "STATES_MAX_LEN", "STATE_COLUMN_LEN",
           "IllegalTransition", "Machine"]
