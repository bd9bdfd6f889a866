from decimal import Decimal

import pytest

from caldera.k8s.quantity import QuantityError, cpu_millis, format_quantity, is_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("500m", Decimal("0.5")),
        ("2Gi", Decimal(2 * 2**30)),
        ("1.5Ki", Decimal(1536)),
        ("1e3", Decimal(1000)),
        ("2E-2", Decimal("0.02")),
        ("100M", Decimal(100_000_000)),
        ("250u", Decimal("0.00025")),
        ("+8", Decimal(8)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_quantity_reads_every_suffix_exactly(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_accepts_numbers_as_yaml_gives_them() -> None:
    assert parse_quantity(8) == 8
    assert parse_quantity(10.0) == 10


@pytest.mark.parametrize("text", ["", "1X", "Gi", "1 Gi", "1.2.3", "ten", "1Gib"])
def test_parse_quantity_rejects_malformed_text_with_the_value_in_the_message(text: str) -> None:
    with pytest.raises(QuantityError, match="not a quantity"):
        parse_quantity(text)


def test_parse_quantity_rejects_booleans() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)


def test_is_quantity_matches_the_crd_pattern() -> None:
    assert is_quantity("16Gi")
    assert not is_quantity("16 Gi")


def test_format_quantity_keeps_integers_integral() -> None:
    assert format_quantity(4) == "4"
    assert format_quantity(10.0) == "10"
    assert format_quantity(0.5) == "0.5"
    assert format_quantity("500m") == "500m"


def test_cpu_millis_rounds_up() -> None:
    assert cpu_millis("1") == 1000
    assert cpu_millis("250m") == 250
    assert cpu_millis("0.0001") == 1
