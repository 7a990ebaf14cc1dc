"""A step's result as JSON: the short path for scalars writes what the encoder writes."""

from __future__ import annotations

from typing import Any

import pytest

from dataflows.errors import PayloadError, PayloadTooLarge
from dataflows.serialization import dumps, dumps_result

VALUES: list[Any] = [
    0,
    -7,
    10**40,
    "",
    "plain",
    'quote " and \\ and \n',
    "é \x00 \ud800 \U0001f600",
    None,
    True,
    False,
    1.5,
    [1, "a", None],
    {"k": [True, {"n": 2}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_the_result_json_is_the_encoders(value: Any) -> None:
    assert dumps_result(value, "k") == dumps(value, what="x")


@pytest.mark.parametrize("value", [None, True, 123456, "abcdef", [1, 2, 3]])
def test_a_result_over_the_limit_is_refused_alike(value: Any) -> None:
    with pytest.raises(PayloadTooLarge) as short:
        dumps_result(value, "k", limit=3)
    with pytest.raises(PayloadTooLarge) as full:
        dumps(value, what="the result of step 'k'", limit=3)
    assert str(short.value) == str(full.value)


def test_a_result_that_is_not_json_names_its_step() -> None:
    with pytest.raises(PayloadError, match="the result of step 'k#2'"):
        dumps_result(object(), "k#2")
    with pytest.raises(PayloadError, match="not JSON"):
        dumps_result(float("nan"), "k")
