"""Money is Decimal yuan with two decimals; each line is rounded ROUND_HALF_UP to the fen on its own."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

FEN = Decimal("0.01")
ZERO = Decimal("0.00")


def round_fen(amount: Decimal) -> Decimal:
    """Round to the fen, half up (away from zero for negative amounts, like the tables do)."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def round_to(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def to_fen(amount: Decimal) -> int:
    """Yuan with at most two decimals → integer fen; refuses to drop a fraction of a fen."""
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} has more than two decimals")
    return int(fen)


def from_fen(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(FEN)


def money_str(amount: Decimal) -> str:
    """Exactly two decimals, as every money figure is printed ("270.61")."""
    return str(round_fen(amount))
