"""Pure rating rules (no Django): rating engine, power factor, late fee, theft, energy, losses.

The vectorised engine lives in `mmis.rating.vector` (imported on demand: it needs NumPy).
"""

from mmis.rating.energy import EnergyResult, billed_energy, estimate_kwh, replacement_energy
from mmis.rating.engine import Line, RatingResult, rate
from mmis.rating.late_fee import LateFeeResult, late_fee
from mmis.rating.losses import allocate_loss, transformer_loss_formula, transformer_loss_ratio
from mmis.rating.power_factor import power_factor
from mmis.rating.tariff import RateRequest, Tariff, Usage, parse_rate_request, parse_tariff, parse_usage
from mmis.rating.theft import TheftResult, theft

__all__ = [
    "EnergyResult",
    "LateFeeResult",
    "Line",
    "RateRequest",
    "RatingResult",
    "Tariff",
    "TheftResult",
    "Usage",
    "allocate_loss",
    "billed_energy",
    "estimate_kwh",
    "late_fee",
    "parse_rate_request",
    "parse_tariff",
    "parse_usage",
    "power_factor",
    "rate",
    "replacement_energy",
    "theft",
    "transformer_loss_formula",
    "transformer_loss_ratio",
]
