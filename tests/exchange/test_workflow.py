"""The check's two state machines against the workflow as specified, exhaustively, and
their drawings in docs/checks.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.exchange import (
    MACHINES,
    REQUESTER,
    RESPONDER,
    STATE_COLUMN_LEN,
    STATES_MAX_LEN,
    IllegalTransition,
    Machine,
)
from lintas.exchange.workflow import _check

DOCS = Path(__file__).resolve().parents[2] / "docs" / "checks.md"

# The workflow as written in the issue, kept apart from the module's own tables.
SPEC: dict[str, dict[tuple[str, str], str]] = {
    "requester": {
        ("submitted", "hub_accepted"): "delivered",
        ("submitted", "refused"): "refused",
        ("delivered", "refused"): "refused",
        ("submitted", "answer_no_hit"): "no_hit",
        ("delivered", "answer_no_hit"): "no_hit",
        ("submitted", "answer_hit"): "hit",
        ("delivered", "answer_hit"): "hit",
        ("hit", "request_disclosure"): "disclosure_requested",
        ("disclosure_requested", "disclosure_received"): "disclosed",
        ("disclosure_requested", "disclosure_denied"): "disclosure_denied",
        ("no_hit", "close"): "closed",
        ("hit", "close"): "closed",
        ("disclosed", "close"): "closed",
        ("disclosure_denied", "close"): "closed",
        ("submitted", "cancel"): "cancelled",
        ("delivered", "cancel"): "cancelled",
        ("submitted", "expire"): "expired",
        ("delivered", "expire"): "expired",
        ("disclosure_requested", "expire"): "expired",
        ("disclosed", "purge_retention"): "purged",
        ("closed", "purge_retention"): "purged",
    },
    "responder": {
        ("received", "refuse"): "refused",
        ("awaiting_review", "refuse"): "refused",
        ("received", "hold_for_review"): "awaiting_review",
        ("received", "match"): "matched",
        ("awaiting_review", "match"): "matched",
        ("matched", "answer_no_hit"): "answered_no_hit",
        ("matched", "answer_hit"): "answered_hit",
        ("answered_hit", "disclosure_requested"): "disclosure_pending",
        ("disclosure_pending", "approve_all"): "disclosure_approved",
        ("disclosure_pending", "approve_partial"): "disclosure_approved",
        ("disclosure_pending", "deny"): "disclosure_denied",
        ("disclosure_approved", "disclosure_sent"): "disclosed",
        ("answered_no_hit", "close"): "closed",
        ("answered_hit", "close"): "closed",
        ("disclosed", "close"): "closed",
        ("disclosure_denied", "close"): "closed",
        ("received", "cancel"): "cancelled",
        ("awaiting_review", "cancel"): "cancelled",
        ("received", "expire"): "expired",
        ("awaiting_review", "expire"): "expired",
        ("disclosure_pending", "expire"): "expired",
    },
}
TERMINAL = {"requester": {"refused", "cancelled", "expired", "purged"},
            "responder": {"refused", "closed", "cancelled", "expired"}}
INITIAL = {"requester": "submitted", "responder": "received"}

machines = pytest.mark.parametrize("m", MACHINES, ids=lambda m: m.name)


def reachable(m: Machine, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for event in m.events_from(state):
            target = m.next(state, event)
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@machines
def test_the_tables_are_the_specified_workflow(m: Machine) -> None:
    spec = SPEC[m.name]
    assert dict(m.transitions) == spec
    assert m.initial == INITIAL[m.name] and m.terminal == TERMINAL[m.name]
    assert set(m.states) == {s for pair in spec for s in pair[:1]} | set(spec.values())
    assert set(m.events) == {e for _, e in spec}


@machines
def test_every_pair_of_state_and_event_is_either_listed_or_illegal(m: Machine) -> None:
    spec = SPEC[m.name]
    for state in m.states:
        for event in m.events:
            if (state, event) in spec:
                assert m.can(state, event)
                assert m.next(state, event) == spec[state, event]
            else:
                assert not m.can(state, event)
                with pytest.raises(IllegalTransition) as caught:
                    m.next(state, event)
                error = caught.value
                assert (error.machine, error.state, error.event) == (m.name, state, event)
                assert error.allowed == m.events_from(state)
                assert str(error).startswith(
                    f"check in state '{state}' cannot '{event}' ({m.name})")


@machines
def test_terminal_states_accept_no_event_and_the_others_some(m: Machine) -> None:
    for state in m.states:
        assert (m.events_from(state) == ()) == (state in m.terminal)
    for state in m.terminal:
        assert not any(m.can(state, e) for e in m.events)
        with pytest.raises(IllegalTransition, match="is final"):
            m.next(state, m.events[0])


def test_messages_tell_the_officer_what_the_check_can_still_do() -> None:
    with pytest.raises(IllegalTransition) as caught:
        REQUESTER.next("closed", "answer_hit")
    assert str(caught.value) == ("check in state 'closed' cannot 'answer_hit' (requester); "
                                 "from 'closed' it accepts only 'purge_retention'")
    assert isinstance(caught.value, Exception) and not isinstance(caught.value, ValueError)


@machines
@pytest.mark.parametrize("call", ["next", "can", "events_from"])
def test_unknown_names_are_value_errors_that_name_them(m: Machine, call: str) -> None:
    with pytest.raises(ValueError, match="unknown state 'sent'"):
        getattr(m, call)("sent", *(["close"] if call != "events_from" else []))
    if call != "events_from":
        with pytest.raises(ValueError, match="unknown event 'reopen'"):
            getattr(m, call)(m.initial, "reopen")
        with pytest.raises(ValueError, match="unknown event 'Close'"):
            getattr(m, call)(m.initial, "Close")


def test_an_event_of_the_other_side_is_unknown_not_illegal() -> None:
    with pytest.raises(ValueError, match="unknown event 'approve_all'"):
        REQUESTER.next("disclosure_requested", "approve_all")
    with pytest.raises(ValueError, match="unknown state 'submitted'"):
        RESPONDER.next("submitted", "match")


@machines
def test_every_state_is_reachable_and_every_check_can_end(m: Machine) -> None:
    assert reachable(m, m.initial) == set(m.states)
    for state in m.states:
        assert reachable(m, state) & m.terminal, state


def test_state_names_fit_their_column() -> None:
    longest = max((s for m in MACHINES for s in m.states), key=len)
    assert STATES_MAX_LEN == len(longest) == len("disclosure_requested")
    assert STATES_MAX_LEN <= STATE_COLUMN_LEN == 32


def run(m: Machine, events: list[str]) -> None:
    state = m.initial
    for event in events:
        before = state
        try:
            state = m.next(state, event)
        except IllegalTransition:
            assert not m.can(before, event) and state == before
        else:
            assert state in m.states and before not in m.terminal
            assert (before, event) in SPEC[m.name]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_random_event_sequences_only_take_listed_transitions(data: st.DataObject) -> None:
    m = data.draw(st.sampled_from(MACHINES))
    run(m, data.draw(st.lists(st.sampled_from(m.events), max_size=30)))


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_random_legal_walks_never_leave_a_terminal_state(data: st.DataObject) -> None:
    m = data.draw(st.sampled_from(MACHINES))
    state, path = m.initial, [m.initial]
    for _ in range(data.draw(st.integers(0, 30))):
        allowed = m.events_from(state)
        if not allowed:
            break
        state = m.next(state, data.draw(st.sampled_from(allowed)))
        path.append(state)
    for i, step in enumerate(path):
        if step in m.terminal:
            assert i == len(path) - 1


def bad(**changes: object) -> Machine:
    fields: dict[str, object] = {"name": "toy", "initial": "a", "states": ("a", "b"),
                                 "terminal": frozenset({"b"}),
                                 "transitions": {("a", "go"): "b"}}
    fields.update(changes)
    return Machine(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("machine", "complaint"), [
    (bad(), None),
    (bad(transitions={("a", "go"): "c"}), "'c' is not a declared state"),
    (bad(transitions={("a", "go"): "b", ("b", "go"): "a"}), "terminal state 'b' has"),
    (bad(terminal=frozenset()), "state 'b' is not terminal but accepts no event"),
    (bad(states=("a", "b", "c"), terminal=frozenset({"b", "c"})), "'c' cannot be reached"),
    (bad(initial="z"), "initial or terminal state 'z' is not declared"),
    (bad(states=("a", "b", "a")), "declared twice"),
    (bad(states=("a", "B"), terminal=frozenset({"B"}), transitions={("a", "go"): "B"}),
     "state 'B' is not a lower_case name"),
    (bad(states=("a", "b" * 33), terminal=frozenset({"b" * 33}),
         transitions={("a", "go"): "b" * 33}), "at most 32 characters"),
])
def test_a_bad_table_fails_the_import_check(machine: Machine, complaint: str | None) -> None:
    if complaint is None:
        _check(machine)
    else:
        with pytest.raises(RuntimeError, match=complaint):
            _check(machine)


@machines
def test_the_drawing_is_deterministic_and_complete(m: Machine) -> None:
    text = m.mermaid()
    assert text == m.mermaid() and text.startswith(f"stateDiagram-v2\n    [*] --> {m.initial}\n")
    lines = text.splitlines()
    for (source, event), target in m.transitions.items():
        assert f"    {source} --> {target}: {event}" in lines
    assert {ln.split()[0] for ln in lines if ln.endswith("--> [*]")} == m.terminal
    assert len(lines) == 2 + len(m.transitions) + len(m.terminal)


@machines
def test_docs_draw_the_machines_as_the_code_does(m: Machine) -> None:
    assert f"```mermaid\n{m.mermaid()}```" in DOCS.read_text(encoding="utf-8"), (
        f"docs/checks.md is out of date: paste {m.name.upper()}.mermaid() into it")
