"""ConvVQVAE: log-mel -> 1-D conv encoder over time -> ResidualVQ -> 1-D conv decoder -> log-mel.

Mel bins are the channels and time is the convolved axis, so codes form a grid of L levels by T'
time positions (T' = T / downsample): the natural shape for encoding, decoding and editing codes.

    model = ConvVQVAE(config)                     # a resolved VQVAEConfig (concrete codebook size)
    model = ConvVQVAE(config, sync=sda.train.distributed)   # several processes: sda.model.codebook.Sync
    model.set_normalization(train_mels)           # per-bin mean/std of the training log-mels
    out = model(mel)                              # mel [B, M, T] log-mel
    out = model(mel, quantize=False)              # warm-up (sda.train.warmup): a plain autoencoder
    out.reconstruction                            # [B, M, T] log-mel
    out.codes                                     # [B, T', L] int64
    out.loss, out.reconstruction_loss             # scalars; loss = recon + weight x commitment
    out.commitment, out.counts, out.replaced      # [L], [L, K], [L] from the quantizer
    model.decode(model.encode(mel))               # codes round trip, [B, M, T]
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from sda.config import VQVAEConfig
from sda.model.codebook import LOCAL, Sync
from sda.model.losses import reconstruction_loss, total_loss
from sda.model.quantizer import Quantizer, QuantizerOutput, ResidualVQ


class VQVAEOutput(NamedTuple):
    reconstruction: torch.Tensor  # [B, M, T]
    codes: torch.Tensor  # [B, T', L]
    loss: torch.Tensor  # scalar
    reconstruction_loss: torch.Tensor  # scalar
    commitment: torch.Tensor  # [L]
    counts: torch.Tensor  # [L, K]
    replaced: torch.Tensor  # [L]


class ResBlock(nn.Module):
    """x + conv1x1(gelu(conv3(gelu(x)))), dilated to widen the receptive field cheaply."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.GELU(), nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.GELU(), nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x):
        return x + self.net(x)


def encoder(n_mels: int, hidden: int, dim: int, stages: int) -> nn.Sequential:
    """[B, n_mels, T] -> [B, dim, T / 2**stages]."""
    layers = [nn.Conv1d(n_mels, hidden, 3, padding=1), ResBlock(hidden, 1), ResBlock(hidden, 3)]
    for _ in range(stages):
        layers += [nn.GELU(), nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), ResBlock(hidden, 1)]
    return nn.Sequential(*layers, nn.GELU(), nn.Conv1d(hidden, dim, 1))


def decoder(dim: int, hidden: int, n_mels: int, stages: int) -> nn.Sequential:
    """[B, dim, T'] -> [B, n_mels, T' * 2**stages]."""
    layers = [nn.Conv1d(dim, hidden, 3, padding=1), ResBlock(hidden, 1)]
    for _ in range(stages):
        layers += [nn.GELU(), nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), ResBlock(hidden, 1)]
    return nn.Sequential(*layers, ResBlock(hidden, 3), nn.GELU(), nn.Conv1d(hidden, n_mels, 3, padding=1))


class ConvVQVAE(nn.Module):
    mel_mean: torch.Tensor
    mel_std: torch.Tensor

    def __init__(self, config: VQVAEConfig, quantizer: Quantizer | None = None, sync: Sync = LOCAL):
        """quantizer: any module with ResidualVQ's interface; default the one the config describes, its
        codebooks kept identical across processes by sync (sda.model.codebook.Sync; one process by default)."""
        super().__init__()
        if config.codebook_size is None:
            raise ValueError("ConvVQVAE needs a resolved config: call config.resolve(...) for a concrete codebook size")
        self.config = config
        self.codebook_size: int = config.codebook_size
        n_mels, stages = config.audio.n_mels, int(math.log2(config.downsample))
        self.encoder = encoder(n_mels, config.hidden_channels, config.codebook_dim, stages)
        self.quantizer: Quantizer = quantizer or ResidualVQ(
            config.rvq_levels, self.codebook_size, config.codebook_dim, config.ema_decay, config.dead_code_threshold,
            config.kmeans_iters, sync)
        self.decoder = decoder(config.codebook_dim, config.hidden_channels, n_mels, stages)
        # Log-mels sit around -11..2 with very different spread per bin; the network sees them
        # standardised per bin, with statistics from the training set saved alongside the weights.
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))

    @torch.no_grad()
    def set_normalization(self, mels: torch.Tensor) -> None:
        """Per-bin statistics from training log-mels [N, M, T]."""
        self.mel_mean.copy_(mels.mean(dim=(0, 2)))
        self.mel_std.copy_(mels.std(dim=(0, 2)).clamp_min(1e-3))

    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, M, T] -> latents [B, D, T']."""
        return self.encoder((mel - self.mel_mean[:, None]) / self.mel_std[:, None])

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, D, T'] -> log-mel [B, M, T]."""
        return self.decoder(latents) * self.mel_std[:, None] + self.mel_mean[:, None]

    def forward(self, mel: torch.Tensor, quantize: bool = True) -> VQVAEOutput:
        """quantize=False: the latents reach the decoder as they are; codebooks untouched, no commitment,
        codes -1 and counts zero (there is nothing to count)."""
        z = self._encode(mel)
        q = self.quantizer(z) if quantize else self._unquantized(z)
        reconstruction = self._decode(q.quantized)
        recon = reconstruction_loss(reconstruction, mel)
        loss = total_loss(recon, q.commitment, self.config.commitment_weight)
        return VQVAEOutput(reconstruction, q.codes, loss, recon, q.commitment, q.counts, q.replaced)

    def _unquantized(self, z: torch.Tensor) -> QuantizerOutput:
        b, _, t = z.shape
        levels, k = self.config.rvq_levels, self.codebook_size
        return QuantizerOutput(quantized=z.float(), codes=torch.full((b, t, levels), -1, device=z.device),
                               commitment=torch.zeros(levels, device=z.device),
                               counts=torch.zeros(levels, k, dtype=torch.int64, device=z.device),
                               replaced=torch.zeros(levels, dtype=torch.int64, device=z.device))

    @torch.no_grad()
    def initialize(self, mels: torch.Tensor, count_scale: float = 1.0) -> None:
        """k-means the codebooks on encoder outputs of training log-mels [N, M, T]; count_scale converts
        k-means' cluster sizes to the usage units the EMA keeps (sda.train.warmup)."""
        self.quantizer.initialize(self._encode(mels), count_scale)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, M, T] -> codes [B, T', L]; reads the codebooks only."""
        was_training = self.training
        self.eval()
        try:
            return self.quantizer(self._encode(mel)).codes
        finally:
            self.train(was_training)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T', L] -> log-mel [B, M, T' * downsample]."""
        return self._decode(self.quantizer.decode(codes))
