"""The identity check's two state machines: the REQUESTER's record of a check on the node
of the member that asks, and the RESPONDER's record of it on the node of the partner
that answers. Each node keeps one record per check, in one state; the caller moves it
with `next(state, event)` and audits every transition.

The tables below are the whole workflow: a pair (state, event) not listed is an
`IllegalTransition`, so a late or repeated message (an answer to a cancelled check, a
second approval) can never move a check. The tables are checked at import, so that a bad
edit fails at once rather than in production. docs/checks.md draws both machines with
`mermaid()`, and its test fails if the page and the tables disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

STATE_COLUMN_LEN = 32  # the database column that stores a state is String(32)
_NAME = re.compile(r"^[a-z]([a-z_]*[a-z])?$")


class IllegalTransition(Exception):
    """The check is in a state where this event is not allowed. The message is meant
    for the officer; `allowed` lists the events the state does accept."""

    def __init__(self, machine: str, state: str, event: str,
                 allowed: tuple[str, ...] = ()) -> None:
        self.machine, self.state, self.event, self.allowed = machine, state, event, allowed
        hint = (f"; from '{state}' it accepts only {', '.join(repr(e) for e in allowed)}"
                if allowed else f"; '{state}' is final")
        super().__init__(f"check in state '{state}' cannot '{event}' ({machine}){hint}")


@dataclass(frozen=True, eq=False)
class Machine:
    """A state machine: `transitions` maps (state, event) to the next state, in the
    order the workflow reads (which is the order `mermaid()` draws). `terminal` states
    accept no event."""

    name: str
    initial: str
    states: tuple[str, ...]
    terminal: frozenset[str]
    transitions: Mapping[tuple[str, str], str]
    events: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transitions", MappingProxyType(dict(self.transitions)))
        object.__setattr__(self, "events",
                           tuple(dict.fromkeys(e for _, e in self.transitions)))

    def next(self, state: str, event: str) -> str:
        """The state after `event` in `state`. Raises ValueError for a name this
        machine does not know, IllegalTransition for a known event the state does not
        accept."""
        self._known(state, event)
        target = self.transitions.get((state, event))
        if target is None:
            raise IllegalTransition(self.name, state, event, self.events_from(state))
        return target

    def can(self, state: str, event: str) -> bool:
        """Whether `event` is allowed in `state` (ValueError for an unknown name)."""
        self._known(state, event)
        return (state, event) in self.transitions

    def events_from(self, state: str) -> tuple[str, ...]:
        """The events `state` accepts, in table order; none for a terminal state."""
        self._known(state)
        return tuple(e for (s, e) in self.transitions if s == state)

    def mermaid(self) -> str:
        """The machine as a Mermaid `stateDiagram-v2`, one line per transition in table
        order, then the terminal states in state order. Same machine, same text."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        lines += [f"    {s} --> {t}: {e}" for (s, e), t in self.transitions.items()]
        lines += [f"    {s} --> [*]" for s in self.states if s in self.terminal]
        return "\n".join(lines) + "\n"

    def _known(self, state: str, event: str | None = None) -> None:
        if state not in self.states:
            raise ValueError(f"unknown state {state!r} for the {self.name} side of a check: "
                             f"one of {', '.join(self.states)}")
        if event is not None and event not in self.events:
            raise ValueError(f"unknown event {event!r} for the {self.name} side of a "
                             f"check: one of {', '.join(self.events)}")


def _machine(name: str, initial: str, states: Iterable[str], terminal: Iterable[str],
             table: Iterable[tuple[Iterable[str], str, str]]) -> Machine:
    """A checked machine from rows (sources, event, target)."""
    transitions: dict[tuple[str, str], str] = {}
    for sources, event, target in table:
        for source in sources:
            if (source, event) in transitions:
                raise RuntimeError(f"{name}: ({source}, {event}) is listed twice")
            transitions[source, event] = target
    machine = Machine(name, initial, tuple(states), frozenset(terminal), transitions)
    _check(machine)
    return machine


def _check(m: Machine) -> None:
    """Raise RuntimeError unless the machine is well formed: names are short lower-case
    words, every source, target and terminal state is declared, terminal states accept
    no event and the others accept at least one, and every state is reachable from the
    initial one."""
    for kind, names in (("state", m.states), ("event", m.events)):
        for n in names:
            if not _NAME.match(n) or len(n) > STATE_COLUMN_LEN:
                raise RuntimeError(f"{m.name}: {kind} {n!r} is not a lower_case name of at "
                                   f"most {STATE_COLUMN_LEN} characters")
    if len(set(m.states)) != len(m.states):
        raise RuntimeError(f"{m.name}: a state is declared twice")
    declared = set(m.states)
    undeclared = sorted(({m.initial} | m.terminal) - declared)
    if undeclared:
        raise RuntimeError(f"{m.name}: initial or terminal state {undeclared[0]!r} is not "
                           "declared")
    for (source, event), target in m.transitions.items():
        for n in (source, target):
            if n not in declared:
                raise RuntimeError(f"{m.name}: {source} --{event}--> {target}: {n!r} is "
                                   "not a declared state")
    sources = {s for s, _ in m.transitions}
    for s in m.states:
        if s in m.terminal and s in sources:
            raise RuntimeError(f"{m.name}: terminal state {s!r} has an outgoing transition")
        if s not in m.terminal and s not in sources:
            raise RuntimeError(f"{m.name}: state {s!r} is not terminal but accepts no event")
    seen, todo = {m.initial}, [m.initial]
    while todo:
        current = todo.pop()
        for (s, _), t in m.transitions.items():
            if s == current and t not in seen:
                seen.add(t)
                todo.append(t)
    for s in m.states:
        if s not in seen:
            raise RuntimeError(f"{m.name}: state {s!r} cannot be reached from {m.initial!r}")


REQUESTER = _machine(
    "requester", "submitted",
    states=("submitted", "delivered", "refused", "no_hit", "hit", "disclosure_requested",
            "disclosed", "disclosure_denied", "closed", "cancelled", "expired", "purged"),
    # `closed` is not terminal here: a check that holds disclosed data is purged when
    # its retention period ends, and the caller only purges such a check.
    terminal=("refused", "cancelled", "expired", "purged"),
    table=[
        (["submitted"], "hub_accepted", "delivered"),
        (["submitted", "delivered"], "refused", "refused"),
        # An answer can overtake the record of the hub's acknowledgement.
        (["submitted", "delivered"], "answer_no_hit", "no_hit"),
        (["submitted", "delivered"], "answer_hit", "hit"),
        (["hit"], "request_disclosure", "disclosure_requested"),
        (["disclosure_requested"], "disclosure_received", "disclosed"),
        (["disclosure_requested"], "disclosure_denied", "disclosure_denied"),
        (["no_hit", "hit", "disclosed", "disclosure_denied"], "close", "closed"),
        (["submitted", "delivered"], "cancel", "cancelled"),
        (["submitted", "delivered", "disclosure_requested"], "expire", "expired"),
        (["disclosed", "closed"], "purge_retention", "purged"),
    ])

RESPONDER = _machine(
    "responder", "received",
    states=("received", "awaiting_review", "matched", "answered_no_hit", "answered_hit",
            "disclosure_pending", "disclosure_approved", "disclosure_denied", "disclosed",
            "refused", "closed", "cancelled", "expired"),
    terminal=("refused", "closed", "cancelled", "expired"),
    table=[
        (["received", "awaiting_review"], "refuse", "refused"),
        (["received"], "hold_for_review", "awaiting_review"),
        # The probe is destroyed at this transition: only its digest stays, in the audit.
        (["received", "awaiting_review"], "match", "matched"),
        (["matched"], "answer_no_hit", "answered_no_hit"),
        (["matched"], "answer_hit", "answered_hit"),
        (["answered_hit"], "disclosure_requested", "disclosure_pending"),
        (["disclosure_pending"], "approve_all", "disclosure_approved"),
        (["disclosure_pending"], "approve_partial", "disclosure_approved"),
        (["disclosure_pending"], "deny", "disclosure_denied"),
        (["disclosure_approved"], "disclosure_sent", "disclosed"),
        (["answered_no_hit", "answered_hit", "disclosed", "disclosure_denied"], "close",
         "closed"),
        (["received", "awaiting_review"], "cancel", "cancelled"),
        (["received", "awaiting_review", "disclosure_pending"], "expire", "expired"),
    ])

MACHINES = (REQUESTER, RESPONDER)
STATES_MAX_LEN = max(len(s) for m in MACHINES for s in m.states)  # fits STATE_COLUMN_LEN

