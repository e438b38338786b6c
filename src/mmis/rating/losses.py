"""Transformer loss (变损) for 高供低计 metering (DOMAIN.md §7.1), applied before rating.

Loss energy is whole kWh half-up by default (`places` configures it), allocated to the TOU
periods in proportion to their metered energy with any rounding residue on the largest period,
so the parts always sum to the total.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from mmis.rating.tariff import TOU_PERIODS


def _q(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def load_factor(*, kwh: Decimal, rated_kva: Decimal, cos_phi: Decimal, hours: Decimal) -> Decimal:
    """β = A / (Sn × cosφ × T), the average load factor."""
    denominator = rated_kva * cos_phi * hours
    if denominator <= 0:
        raise ValueError("rated_kva, cos_phi and hours must be greater than 0")
    return kwh / denominator


def transformer_loss_formula(
    *,
    kwh: Decimal,
    no_load_kw: Decimal,
    load_loss_kw: Decimal,
    rated_kva: Decimal,
    cos_phi: Decimal,
    hours: Decimal,
    places: int = 0,
) -> Decimal:
    """Active loss ΔA = P0 × T + Pk × β² × T, rounded half-up (whole kWh by default).

    Example: 315 kVA, P0 0.48, Pk 3.65, 720 h, 90,000 kWh, cosφ 0.9 → 856.50… → 857 kWh.
    No-load loss applies to an energised month even with zero use.
    """
    beta = load_factor(kwh=kwh, rated_kva=rated_kva, cos_phi=cos_phi, hours=hours)
    loss = no_load_kw * hours + load_loss_kw * beta * beta * hours
    return loss.quantize(_q(places), rounding=ROUND_HALF_UP)


def transformer_reactive_loss_formula(
    *,
    kwh: Decimal,
    no_load_current_pct: Decimal,
    impedance_voltage_pct: Decimal,
    rated_kva: Decimal,
    cos_phi: Decimal,
    hours: Decimal,
    places: int = 0,
) -> Decimal:
    """Reactive loss ΔQ = I0 % × Sn × T + Uk % × Sn × β² × T (percent figures as given, e.g. 1.4)."""
    beta = load_factor(kwh=kwh, rated_kva=rated_kva, cos_phi=cos_phi, hours=hours)
    loss = (
        no_load_current_pct * rated_kva * hours + impedance_voltage_pct * rated_kva * beta * beta * hours
    ) / 100
    return loss.quantize(_q(places), rounding=ROUND_HALF_UP)


def transformer_loss_ratio(*, kwh: Decimal, ratio: Decimal, places: int = 0) -> Decimal:
    """Fixed-ratio loss: metered energy × contract ratio (0.02 for 2 %), rounded half-up."""
    if ratio < 0:
        raise ValueError("ratio must not be negative")
    return (kwh * ratio).quantize(_q(places), rounding=ROUND_HALF_UP)


def allocate_loss(*, loss_kwh: Decimal, tou_kwh: dict[str, Decimal], places: int = 0) -> dict[str, Decimal]:
    """Split a loss over TOU periods in proportion to their energy; residue to the largest period.

    857 over peak 30,000 / flat 35,000 / valley 25,000 → 286 / 333 / 238.
    """
    total = sum(tou_kwh.values(), Decimal(0))
    periods = [p for p in TOU_PERIODS if p in tou_kwh] + [p for p in tou_kwh if p not in TOU_PERIODS]
    if not periods:
        return {}
    if total == 0:
        shares = {p: Decimal(0) for p in periods}
        shares[periods[0]] = loss_kwh
        return shares
    q = _q(places)
    shares = {p: (loss_kwh * tou_kwh[p] / total).quantize(q, rounding=ROUND_HALF_UP) for p in periods}
    largest = max(periods, key=lambda p: tou_kwh[p])  # first of equals in TOU order
    shares[largest] += loss_kwh - sum(shares.values(), Decimal(0))
    return shares


def add_loss(*, tou_kwh: dict[str, Decimal], loss_kwh: Decimal, places: int = 0) -> dict[str, Decimal]:
    """Metered TOU energy plus its share of the loss, ready for rating."""
    shares = allocate_loss(loss_kwh=loss_kwh, tou_kwh=tou_kwh, places=places)
    return {p: tou_kwh[p] + shares[p] for p in tou_kwh}
