"""sda.model.quantizer.ResidualVQ: residual levels, straight-through gradients, and it finds real clusters."""

import torch

from sda.model.health import HealthWindow
from sda.model.quantizer import ResidualVQ


def as_latents(x, t=8):
    """Rows [B*T, D] -> latents [B, D, T] the way ResidualVQ reads them back."""
    return x.reshape(-1, t, x.shape[1]).transpose(1, 2)


def test_shapes_and_codes(seeded):
    rvq = ResidualVQ(levels=3, codebook_size=16, dim=8)
    z = torch.randn(4, 8, 10, generator=seeded)
    out = rvq(z)
    assert out.quantized.shape == (4, 8, 10) and out.quantized.dtype == torch.float32
    assert out.codes.shape == (4, 10, 3) and out.codes.dtype == torch.int64
    assert out.commitment.shape == (3,) and out.counts.shape == (3, 16) and out.replaced.shape == (3,)
    assert out.counts.sum(dim=1).tolist() == [40, 40, 40]
    assert rvq.initialized


def test_each_level_quantises_the_residual_of_the_previous_ones(seeded):
    rvq = ResidualVQ(levels=3, codebook_size=16, dim=8)
    z = torch.randn(4, 8, 10, generator=seeded)
    rvq.initialize(z)
    rvq.eval()
    out = rvq(z)
    residual = z.transpose(1, 2).reshape(-1, 8)
    for i, level in enumerate(rvq.levels):
        nearest = torch.cdist(residual, level.embed).argmin(dim=1)
        assert torch.equal(out.codes[..., i].reshape(-1), nearest)
        residual = residual - level.embed[nearest]
    # The output is the sum of the chosen codes, and decode() gives the same from the codes.
    torch.testing.assert_close(rvq.decode(out.codes), out.quantized)
    rows = z.transpose(1, 2).reshape(-1, 8)
    torch.testing.assert_close(out.quantized.transpose(1, 2).reshape(-1, 8), rows - residual)


def test_more_levels_quantise_more_finely(seeded):
    z = torch.randn(16, 8, 16, generator=seeded)
    errors = []
    for levels in (2, 3, 4):
        torch.manual_seed(0)
        rvq = ResidualVQ(levels=levels, codebook_size=32, dim=8)
        rvq.initialize(z)
        rvq.eval()
        errors.append((rvq(z).quantized - z).square().mean().item())
    assert errors[0] > errors[1] > errors[2]


def test_straight_through_gradient_and_commitment_reach_only_the_input(seeded):
    rvq = ResidualVQ(levels=2, codebook_size=8, dim=4)
    z = torch.randn(2, 4, 6, generator=seeded, requires_grad=True)
    out = rvq(z)
    weights = torch.randn(2, 4, 6, generator=seeded)
    (out.quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # identity: the quantizer is transparent to gradients
    z.grad = None
    out = rvq(z)
    out.commitment.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert list(rvq.parameters()) == []  # codebooks are EMA buffers, never optimizer parameters


def test_distances_stay_float32_under_autocast(seeded):
    rvq = ResidualVQ(levels=2, codebook_size=16, dim=8)
    z = torch.randn(4, 8, 10, generator=seeded)
    rvq.initialize(z)
    rvq.eval()
    z = z.bfloat16()  # what a bf16 encoder hands over
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(z)
    assert out.quantized.dtype == torch.float32 and out.commitment.dtype == torch.float32
    assert torch.equal(out.codes, rvq(z.float()).codes)


def test_initialize_runs_kmeans_level_by_level(seeded):
    rvq = ResidualVQ(levels=3, codebook_size=8, dim=4)
    assert not rvq.initialized
    z = torch.randn(8, 4, 32, generator=seeded)
    rvq.initialize(z)
    assert rvq.initialized
    # Each level was fitted to what the levels before it left (its cluster means minimise the squared
    # error there), so every level lowers the error.
    residual, errors = z.transpose(1, 2).reshape(-1, 4), []
    for level in rvq.levels:
        residual = residual - level.embed[level.nearest(residual)]
        errors.append(residual.square().sum().item())
    assert z.square().sum().item() > errors[0] > errors[1] > errors[2]


def test_seeded_training_is_reproducible(rng):
    z = torch.randn(4, 8, 10, generator=rng)
    states = []
    for _ in range(2):
        torch.manual_seed(1234)
        rvq = ResidualVQ(levels=2, codebook_size=16, dim=8, dead_code_threshold=1.0)
        for _ in range(5):
            rvq(z + 0.1 * torch.randn_like(z))
        states.append(rvq.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_finds_well_separated_clusters(seeded):
    """A mixture of 32 tight, well-separated clusters and a 32-code first level: after training,
    level 1 uses every code and the two levels together leave almost no error."""
    k, d = 32, 16
    centers = 4.0 * torch.randn(k, d, generator=seeded)

    def batch(n=512):
        labels = torch.randint(k, (n,), generator=seeded)
        return as_latents(centers[labels] + 0.05 * torch.randn(n, d, generator=seeded))

    rvq = ResidualVQ(levels=2, codebook_size=k, dim=d, decay=0.9, dead_code_threshold=0.5)
    rvq.initialize(batch(4096))
    window = HealthWindow(levels=2, codebook_size=k, steps=20)
    for _ in range(60):
        out = rvq(batch())
        window.add(out.counts, out.replaced)
    first = window.snapshot()[0]
    assert first.utilization == 1.0
    assert first.perplexity > 0.9 * k
    rvq.eval()
    z = batch(2048)
    relative_error = ((rvq(z).quantized - z).square().sum() / z.square().sum()).item()
    assert relative_error < 1e-3
