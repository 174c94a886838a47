"""Training loss: multi-resolution reconstruction on log-mel, plus weighted commitment.

    recon = reconstruction_loss(pred, target)          # [B, M, T] log-mel each -> scalar
    loss = total_loss(recon, commitment, weight)       # commitment [L] per level -> scalar

The reconstruction term is an L1 distance on log-mel at several resolutions: the full grid, and
the grid average-pooled by 2 and by 4 in both time and frequency. The fine scale asks for detail;
the coarse scales ask for the envelope and spectral balance, which a pure per-bin loss lets drift
while it chases noise in quiet bins.
"""

import torch
import torch.nn.functional as F

SCALES = (1, 2, 4)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, scales=SCALES) -> torch.Tensor:
    """Mean over scales of the L1 distance between pooled log-mels pred, target [B, M, T]."""
    if pred.shape != target.shape:
        raise ValueError(f"reconstruction_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    pred, target = pred.float().unsqueeze(1), target.float().unsqueeze(1)  # [B, 1, M, T] for 2-D pooling
    terms = [F.l1_loss(F.avg_pool2d(pred, s, ceil_mode=True), F.avg_pool2d(target, s, ceil_mode=True))
             for s in scales]
    return torch.stack(terms).mean()


def total_loss(reconstruction: torch.Tensor, commitment: torch.Tensor, commitment_weight: float) -> torch.Tensor:
    """reconstruction + commitment_weight x (sum of the per-level commitments [L])."""
    return reconstruction + commitment_weight * commitment.sum()
