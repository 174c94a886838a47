"""Residual vector quantizer: L EMA codebook levels, each quantising what the previous ones left.

    rvq = ResidualVQ(levels=3, codebook_size=64, dim=64)
    out = rvq(z)                 # z [B, D, T] from the encoder, any float dtype
    out.quantized                # [B, D, T] float32, straight-through: gradients flow to z unchanged
    out.codes                    # [B, T, L] int64, one code per level and time position
    out.commitment               # [L] float32, mean ||residual - code||^2 per level (gradient to z only)
    out.counts, out.replaced     # [L, K] int64 assignments and [L] re-seeded codes in this call
    rvq.decode(codes)            # [B, T, L] -> [B, D, T]

Distances are always computed in float32 (autocast leaves this module's inputs alone), because a
bfloat16 distance cannot separate close codes. Codebooks are updated by EMA (sda.model.codebook), never
by the optimizer, so they hold no parameters.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from sda.model.codebook import LOCAL, EMACodebook, Sync


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # [B, D, T] float32
    codes: torch.Tensor  # [B, T, L] int64
    commitment: torch.Tensor  # [L] float32
    counts: torch.Tensor  # [L, K] int64
    replaced: torch.Tensor  # [L] int64


class Quantizer(Protocol):
    """What ConvVQVAE needs of its quantizer, an nn.Module: ResidualVQ, or a peer library's in an adapter (bench)."""

    @property
    def initialized(self) -> bool: ...

    def __call__(self, z: torch.Tensor) -> QuantizerOutput: ...

    def initialize(self, z: torch.Tensor, count_scale: float = 1.0) -> None: ...

    def all_finite(self) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    # and, as an nn.Module, its codebook state (the engine undoes a skipped step's EMA update with them):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...


class ResidualVQ(nn.Module):
    def __init__(self, levels: int, codebook_size: int, dim: int, decay: float = 0.95,
                 dead_code_threshold: float = 0.25, kmeans_iters: int = 10, sync: Sync = LOCAL):
        """sync: how the codebooks of several processes stay identical (sda.model.codebook.Sync)."""
        super().__init__()
        self.levels = nn.ModuleList(
            EMACodebook(codebook_size, dim, decay, dead_code_threshold, kmeans_iters, sync) for _ in range(levels)
        )

    @property
    def codebooks(self) -> list[EMACodebook]:
        """The levels, first to last (nn.ModuleList types its items as plain Modules)."""
        return cast(list[EMACodebook], list(self.levels))

    @property
    def initialized(self) -> bool:
        return all(level.is_initialized() for level in self.codebooks)

    def all_finite(self) -> torch.Tensor:
        """[] bool on the codes' device: every code of every level is finite. In training the levels skip
        the kernel's per-call check; the engine reads this once per step instead, with the losses."""
        return torch.stack([level.all_finite() for level in self.codebooks]).all()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z)

    def _quantize(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, t = z.shape
        x = z.float().transpose(1, 2).reshape(b * t, d)  # [N, D] rows are (batch, time) positions
        residual = x
        quantized = torch.zeros_like(x)
        codes, commitment, counts, replaced = [], [], [], []
        for level in self.codebooks:
            out = level(residual.detach())
            commitment.append(F.mse_loss(residual, out.quantized))
            residual = residual - out.quantized
            quantized = quantized + out.quantized
            codes.append(out.indices)
            counts.append(out.counts)
            replaced.append(out.replaced)
        quantized = x + (quantized - x).detach()  # straight-through estimator
        return QuantizerOutput(
            quantized=quantized.reshape(b, t, d).transpose(1, 2),
            codes=torch.stack(codes, dim=1).reshape(b, t, len(self.levels)),
            commitment=torch.stack(commitment),
            counts=torch.stack(counts),
            replaced=torch.stack(replaced),
        )

    @torch.no_grad()
    def initialize(self, z: torch.Tensor, count_scale: float = 1.0) -> None:
        """k-means every level on a sample of encoder outputs z [B, D, T], level by level on the
        residuals, before the first quantized step. Larger samples than one batch give better codes.
        count_scale: see EMACodebook.initialize."""
        b, d, t = z.shape
        residual = z.float().transpose(1, 2).reshape(b * t, d)
        for level in self.codebooks:
            level.initialize(residual, count_scale)
            residual = residual - level.embed[level.nearest(residual)]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, T, l] of the first l <= L levels -> quantized latents [B, D, T] (what those levels give)."""
        chosen = [self.codebooks[i].embed[c] for i, c in enumerate(codes.unbind(-1))]  # l x [B, T, D]
        return sum(chosen[1:], chosen[0]).transpose(1, 2)
