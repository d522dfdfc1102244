"""Losses as modules: each holds its options and calls the function in tensorcalc.functional
(where the formula and the likelihood it comes from are documented)."""

from __future__ import annotations

from ..functional import losses as L
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """(x − t)²: Gaussian negative log-likelihood (F.mse_loss)."""

    def forward(self, input, target):
        return L.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """|x − t|: Laplace negative log-likelihood (F.l1_loss)."""

    def forward(self, input, target):
        return L.l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """Huber loss with threshold δ (F.huber_loss)."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return L.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """Smooth L1 with threshold β (F.smooth_l1_loss)."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return L.smooth_l1_loss(input, target, self.reduction, self.beta)


class BCELoss(_Loss):
    """Bernoulli negative log-likelihood on probabilities (F.binary_cross_entropy)."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return L.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Bernoulli negative log-likelihood on logits, stable (F.binary_cross_entropy_with_logits)."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input, target):
        return L.binary_cross_entropy_with_logits(input, target, self.weight, self.pos_weight,
                                                  self.reduction)


class CrossEntropyLoss(_Loss):
    """Categorical negative log-likelihood of logits (F.cross_entropy)."""

    def __init__(self, weight=None, ignore_index=None, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return L.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (F.nll_loss)."""

    def __init__(self, weight=None, ignore_index=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return L.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class KLDivLoss(_Loss):
    """KL(P ‖ Q) with input log Q (F.kl_div)."""

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return L.kl_div(input, target, self.reduction, self.log_target)


class HingeEmbeddingLoss(_Loss):
    """x for t = 1, max(0, Δ − x) for t = −1 (F.hinge_embedding_loss)."""

    def __init__(self, margin=1.0, reduction="mean"):
        super().__init__(reduction)
        self.margin = margin

    def forward(self, input, target):
        return L.hinge_embedding_loss(input, target, self.margin, self.reduction)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss (F.multi_margin_loss)."""

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.p, self.margin, self.weight = p, margin, weight

    def forward(self, input, target):
        return L.multi_margin_loss(input, target, self.p, self.margin, self.weight,
                                   self.reduction)


class CosineEmbeddingLoss(_Loss):
    """1 − cos for t = 1, max(0, cos − Δ) for t = −1 (F.cosine_embedding_loss)."""

    def __init__(self, margin=0.0, reduction="mean"):
        super().__init__(reduction)
        self.margin = margin

    def forward(self, input1, input2, target):
        return L.cosine_embedding_loss(input1, input2, target, self.margin, self.reduction)


class GaussianNLLLoss(_Loss):
    """Gaussian negative log-likelihood with predicted variance (F.gaussian_nll_loss)."""

    def __init__(self, full=False, eps=1e-6, reduction="mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input, target, var):
        return L.gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)


class PoissonNLLLoss(_Loss):
    """Poisson negative log-likelihood (F.poisson_nll_loss)."""

    def __init__(self, log_input=True, full=False, eps=1e-8, reduction="mean"):
        super().__init__(reduction)
        self.log_input, self.full, self.eps = log_input, full, eps

    def forward(self, input, target):
        return L.poisson_nll_loss(input, target, self.log_input, self.full, self.eps,
                                  self.reduction)


__all__ = ["MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
           "CrossEntropyLoss", "NLLLoss", "KLDivLoss", "HingeEmbeddingLoss", "MultiMarginLoss",
           "CosineEmbeddingLoss", "GaussianNLLLoss", "PoissonNLLLoss"]
