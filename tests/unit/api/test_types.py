import pytest
from pydantic import ValidationError

from caldera.k8s.types import IntOrPercent, KubeModel, Quantity, parse_duration, resolve_int_or_percent


class _Holder(KubeModel):
    amount: Quantity | None = None
    share: IntOrPercent | None = None


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("100ms", 0.1), ("0", 0)])
def test_parse_duration_reads_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 m", "-5s", "1d", ""])
def test_parse_duration_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_percent_rounds_down_for_max_unavailable_and_up_for_partition() -> None:
    assert resolve_int_or_percent("25%", 5, round_up=False) == 1
    assert resolve_int_or_percent("25%", 5, round_up=True) == 2
    assert resolve_int_or_percent(3, 5, round_up=False) == 3


def test_quantity_fields_store_numbers_as_strings() -> None:
    assert _Holder.model_validate({"amount": 4}).amount == "4"


def test_int_or_percent_rejects_a_plain_number_string() -> None:
    with pytest.raises(ValidationError, match="neither an integer nor a percentage"):
        _Holder.model_validate({"share": "3"})


def test_int_or_percent_rejects_negative_counts() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        _Holder.model_validate({"share": -1})
