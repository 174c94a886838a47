"""One codebook level: K codes of dimension D learned by exponential moving averages, not gradients.

State (buffers, saved with the model):
    embed         [K, D]  the codes
    cluster_size  [K]     EMA of how many vectors each code is assigned per step
    embed_sum     [K, D]  EMA of the sum of those vectors
    initialized   []      bool: k-means has run

Invariant, restored by every operation that writes the state (EMA update, k-means initialisation,
dead-code replacement), all through `_set_codes`:

    embed[k] == embed_sum[k] / laplace(cluster_size)[k]

Two bugs common in widely used implementations are excluded by it. After k-means, writing the
centroids into `embed` but not into a consistent `embed_sum` makes the next EMA update recompute
every code from stale sums and shrink the codebook toward zero. And a dead code replaced before
(or without touching the statistics of) the same step's EMA update is overwritten by it. Here the
update runs first, then replacement rewrites code and statistics together, so a replaced code
keeps its value until real assignments move it.

Every assignment (training, k-means, evaluation) goes through sda.kernels.assign, which returns
indices, counts and sums in one pass: the EMA update and the health figures need no other.

A training step makes no host synchronisation here: codes are written with torch.where over all K
rows (a boolean-mask index would ask the device how many rows it selects), the dead-code count stays
a tensor, and the kernel's check for non-finite codes is left to the caller, which makes it once per
step for every level (ResidualVQ.all_finite; the engine reads it with the step's losses). k-means,
once per run, synchronises freely.

Under torch.distributed every process holds the same state and keeps it so, through the Sync it is
given (sda.train.distributed in a training run; LOCAL, one process, by default): each training step sums
the counts and sums over all processes before the EMA update, so every process applies the update of
the global batch; k-means and dead-code replacement draw at random, so process 0 computes them and the
others take its result. Decisions that follow from the state (which codes are dead) come out the same
everywhere without talking. The sync is injected, as vector-quantize-pytorch injects its all-reduce,
so the model layer knows nothing of how processes talk.
"""

from typing import NamedTuple, Protocol

import torch
from torch import nn

from sda.kernels import assign

LAPLACE_EPS = 1e-5


class Sync(Protocol):
    """What the codebooks need from the processes of a run; the module sda.train.distributed is one.
    what: '...ing ...', for the message of a collective that fails."""

    def rank(self) -> int:
        """This process's rank; 0 decides what is drawn at random."""
        ...

    def all_reduce_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum tensor over all processes, in place; returns it."""
        ...

    def broadcast_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Overwrite tensor with process 0's, in place; returns it."""
        ...


class LocalSync:
    """One process: every collective is the identity."""

    def rank(self) -> int:
        return 0

    def all_reduce_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        return tensor

    def broadcast_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        return tensor


LOCAL: Sync = LocalSync()


class CodebookOutput(NamedTuple):
    quantized: torch.Tensor  # [N, D] float32, the chosen codes (no gradient)
    indices: torch.Tensor  # [N] int64
    counts: torch.Tensor  # [K] int64, assignments in this call (in training: summed over all processes)
    replaced: torch.Tensor  # [] int64, codes re-seeded in this call (0 outside training), on the codes' device


def laplace(cluster_size: torch.Tensor, eps: float = LAPLACE_EPS) -> torch.Tensor:
    """Laplace-smoothed cluster sizes [K]: never zero, same total."""
    n = cluster_size.sum()
    return (cluster_size + eps) / (n + cluster_size.numel() * eps) * n


def sample_rows(n: int, k: int, device) -> torch.Tensor:
    """k random row indices [k] out of n: distinct when n >= k. Uses torch's global generator."""
    return torch.randperm(n, device=device)[:k] if n >= k else torch.randint(n, (k,), device=device)


def kmeans_plus_plus(x: torch.Tensor, k: int) -> torch.Tensor:
    """k seed rows [k, D] of x [N, D] by D^2 sampling: each next seed is drawn with probability
    proportional to its squared distance from the seeds so far. Random seeds (as many libraries use)
    often put two seeds in one cluster and leave a pair of clusters sharing one code for good."""
    seeds = x[sample_rows(x.shape[0], 1, x.device)]
    nearest = (x - seeds[0]).square().sum(dim=1)  # [N] squared distance to the closest seed
    for _ in range(k - 1):
        # When every point is a seed already (N < K, or duplicates), repeat one at random.
        row = torch.multinomial(nearest, 1) if nearest.sum() > 0 else sample_rows(x.shape[0], 1, x.device)
        seeds = torch.cat([seeds, x[row]])
        nearest = torch.minimum(nearest, (x - x[row]).square().sum(dim=1))
    return seeds


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on x [N, D] float32 -> (centroids [K, D], counts [K] of the final assignment).

    k-means++ seeds, then `iters` rounds of assign-and-average; a cluster that empties is re-seeded
    from a random row.
    """
    n = x.shape[0]
    centroids = kmeans_plus_plus(x, k)
    for _ in range(iters):
        a = assign(x, centroids)
        used = a.counts > 0
        centroids[used] = a.sums[used] / a.counts[used, None]
        empty = int((~used).sum())
        if empty:
            centroids[~used] = x[sample_rows(n, empty, x.device)]
    return centroids, assign(x, centroids, with_sums=False).counts


class EMACodebook(nn.Module):
    """K codes [K, D]; forward quantises x [N, D] float32 (see the module docstring for the state)."""

    embed: torch.Tensor
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, codebook_size: int, dim: int, decay: float = 0.95, dead_code_threshold: float = 0.25,
                 kmeans_iters: int = 10, sync: Sync = LOCAL):
        super().__init__()
        self.sync = sync
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.kmeans_iters = kmeans_iters
        embed = torch.randn(codebook_size, dim)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", embed * laplace(torch.ones(codebook_size))[:, None])
        self.register_buffer("initialized", torch.tensor(False))
        self._seen_initialized = False  # a latch over the buffer, so that training reads it once

    @property
    def codebook_size(self) -> int:
        return self.embed.shape[0]

    def is_initialized(self) -> bool:
        """Whether k-means has run. Reads the buffer (a host sync on a GPU) only until it says True:
        nothing but loading a state sets it back, and loading resets the latch."""
        if not self._seen_initialized:
            self._seen_initialized = bool(self.initialized)
        return self._seen_initialized

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._seen_initialized = False

    def forward(self, x: torch.Tensor) -> CodebookOutput:
        """Quantise x [N, D] float32. In training mode: k-means on first use, EMA update, dead-code
        replacement, in that order, and no check for non-finite codes (see the module docstring).
        In eval mode the state is only read."""
        if self.training and x.shape[0] > 0 and not self.is_initialized():
            self.initialize(x)
        a = assign(x, self.embed, with_sums=self.training, check_finite=not self.training)
        quantized = self.embed[a.indices]
        replaced = torch.zeros((), dtype=torch.int64, device=x.device)
        if self.training:
            statistics = "summing codebook statistics"
            self.ema_update(self.sync.all_reduce_(a.counts, statistics), self.sync.all_reduce_(a.sums, statistics))
            replaced = self.replace_dead(x)
        return CodebookOutput(quantized, a.indices, a.counts, replaced)

    def all_finite(self) -> torch.Tensor:
        """[] bool on the codes' device: every code finite, and its squared norm too (as the kernel's check)."""
        return torch.isfinite(self.embed.float().square().sum(dim=1)).all()

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Indices [N] of the nearest codes to x [N, D]; reads the state only."""
        return assign(x, self.embed, with_sums=False).indices

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, count_scale: float = 1.0) -> None:
        """k-means on real vectors x [N, D]; statistics start consistent with the centroids, with usage
        counts times count_scale (to express them per training step: see sda.train.warmup).
        Several processes: process 0's x and k-means decide, the others receive the result."""
        centroids, counts = torch.empty_like(self.embed), torch.empty_like(self.cluster_size)
        if self.sync.rank() == 0:
            found, found_counts = kmeans(x.detach().float(), self.codebook_size, self.kmeans_iters)
            centroids, counts = found, found_counts.to(counts.dtype) * count_scale
        everything = torch.ones(self.codebook_size, dtype=torch.bool, device=x.device)
        what = "taking process 0's k-means codes"
        self._set_codes(everything, self.sync.broadcast_(centroids, what), self.sync.broadcast_(counts, what))
        self.initialized.fill_(True)
        self._seen_initialized = True

    @torch.no_grad()
    def ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        """Move the statistics toward this step's counts [K] and sums [K, D]; used codes follow.

        Unused codes stay exactly where they are: as their usage decays toward zero the smoothing
        term would come to dominate embed_sum / laplace(cluster_size) and pull them to the origin.
        """
        used = counts > 0
        self.cluster_size.lerp_(counts.to(self.cluster_size.dtype), 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        moved = self.embed_sum / laplace(self.cluster_size)[:, None]  # [K, D]; only used rows are written
        self._set_codes(used, moved, self.cluster_size)

    @torch.no_grad()
    def replace_dead(self, x: torch.Tensor) -> torch.Tensor:
        """Re-seed codes whose EMA usage fell under the threshold with random rows of x [N, D]; returns
        how many, [] int64. Several processes: the dead codes are the same in each (the state is);
        process 0 draws the rows.

        Rows are drawn for all K codes, distinct when N >= K, and the dead ones take theirs: how many
        are dead is never asked of the device, at the price of one [K, D] gather (and broadcast)."""
        if self.dead_code_threshold <= 0 or x.shape[0] == 0:
            return torch.zeros((), dtype=torch.int64, device=x.device)
        dead = self.cluster_size < self.dead_code_threshold
        candidates = torch.empty_like(self.embed)
        if self.sync.rank() == 0:
            candidates = x[sample_rows(x.shape[0], self.codebook_size, x.device)].detach().float()
        # A re-seeded code starts at twice the threshold: log(2) / (1 - decay) steps to attract data
        # before it counts as dead again.
        start = torch.full_like(self.cluster_size, 2.0 * self.dead_code_threshold)
        self._set_codes(dead, self.sync.broadcast_(candidates, "taking process 0's re-seeded codes"), start)
        return dead.sum()

    def _set_codes(self, which: torch.Tensor, codes: torch.Tensor, cluster_size: torch.Tensor) -> None:
        """Where the mask which [K] is set, write codes [K, D] and their usage [K] (other rows of both are
        ignored), then re-derive embed_sum for every code so the invariant holds (the smoothing depends on
        the total usage)."""
        self.embed.copy_(torch.where(which[:, None], codes, self.embed))
        self.cluster_size.copy_(torch.where(which, cluster_size, self.cluster_size))
        self.embed_sum.copy_(self.embed * laplace(self.cluster_size)[:, None])
