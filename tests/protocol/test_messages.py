"""Body validation of the check answer: the rates a partner's node may send."""

from __future__ import annotations

from typing import Any

import pytest

from lintas.protocol import errors as e
from lintas.protocol.messages import MESSAGE_TYPES

CHECK = "0f0e0d0c-0b0a-4908-8706-050403020100"


def answer(**candidate: Any) -> dict[str, Any]:
    return {"check": CHECK, "outcome": "hit",
            "candidates": [{"candidate": "c1", "rank": 1, **candidate}]}


def test_a_hit_may_carry_the_comparison_and_search_rates() -> None:
    validate = MESSAGE_TYPES["check.answer"]
    validate(answer())
    validate(answer(fmr=2.5e-9, fpir=2.5e-4))
    validate(answer(fmr=0, fpir=1))


@pytest.mark.parametrize(("field", "value"), [
    ("fpir", -0.1), ("fpir", 1.5), ("fpir", "0.001"), ("fpir", True), ("fpir", float("nan")),
    ("fmr", 2.0), ("fmr", None)])
def test_a_rate_outside_0_1_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(e.InvalidBody, match=rf"body\.candidates\[0\]\.{field}: a rate, 0\.\.1"):
        MESSAGE_TYPES["check.answer"](answer(**{field: value}))


def test_an_unknown_candidate_field_is_refused() -> None:
    with pytest.raises(e.InvalidBody, match="unexpected"):
        MESSAGE_TYPES["check.answer"](answer(score=0.4))
