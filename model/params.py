"""Parameter counts of a network, in the two senses fxmix reports."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """All parameters, frozen ones included (the reference's published counts include them)."""
    return sum(p.numel() for p in model.parameters())


def count_trainable_parameters(model: nn.Module) -> int:
    """Parameters that training updates (``requires_grad``), e.g. fewer under ``train.train_only``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
