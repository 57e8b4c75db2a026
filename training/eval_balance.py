"""Level balance of a mix, per class and per track: the estimator lives in :mod:`fxmix.model.balance` (the
decisions of ``fxmix mix`` use it too); the evaluation's names are re-exported here."""

from __future__ import annotations

from ..model.balance import (
    BALANCE_FLOOR_LU,
    Contributions,
    balance_error_lu,
    balance_lu,
    band_energy,
    energy,
    estimate_contributions,
    exact_balance_lu,
)

__all__ = [
    "BALANCE_FLOOR_LU",
    "Contributions",
    "balance_error_lu",
    "balance_lu",
    "band_energy",
    "energy",
    "estimate_contributions",
    "exact_balance_lu",
]
