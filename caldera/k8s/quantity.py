"""Kubernetes resource quantities ("500m", "2Gi", "1e3") parsed to exact Decimals.

Used for validation (the API server's Quantity grammar) and for GPU/CPU/memory arithmetic
by placement and the autoscaler.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# The grammar of k8s.io/apimachinery/pkg/api/resource.Quantity, as CRD schemas spell it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_SPLIT_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY_RE.match(value))


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Parse a Kubernetes quantity to its exact value ("100m" -> 0.1, "1Gi" -> 1073741824)."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity: expected a number or a string like '500m' or '2Gi'")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    text = value.strip()
    if not _QUANTITY_RE.match(text):
        raise QuantityError(
            f"{value!r} is not a quantity: expected a number with an optional suffix "
            "(n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like e3)"
        )
    match = _SPLIT_RE.match(text)
    if match is None:  # unreachable: the grammar above guarantees a numeric prefix
        raise QuantityError(f"{value!r} is not a quantity")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError(f"{value!r} is not a quantity: bad number {number!r}") from exc
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * _DECIMAL[suffix]
    # Exponent form: "1e3", "2E-2".
    return base * (Decimal(10) ** int(suffix[1:]))


def format_quantity(value: str | int | float | Decimal) -> str:
    """The canonical string form a manifest stores: integers stay integers, decimals are not rounded."""
    if isinstance(value, str):
        parse_quantity(value)
        return value.strip()
    number = parse_quantity(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def cpu_millis(value: str | int | float | Decimal) -> int:
    """CPU quantity in millicores, rounded up as the scheduler does."""
    millis = parse_quantity(value) * 1000
    return int(millis.to_integral_value(rounding="ROUND_CEILING"))
