"""Loss functions between measures: Sinkhorn divergences, Hausdorff, kernel norms (``SamplesLoss``)."""

from .samples_loss import SamplesLoss

__all__ = ["SamplesLoss"]
