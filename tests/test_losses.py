"""sda.model.losses: the multi-resolution reconstruction term and the total."""

import pytest
import torch

from sda.model.losses import SCALES, reconstruction_loss, total_loss


def test_zero_for_identical_inputs(rng):
    x = torch.randn(2, 80, 64, generator=rng)
    assert reconstruction_loss(x, x.clone()) == 0


def test_a_constant_offset_counts_at_every_scale(rng):
    x = torch.randn(2, 80, 64, generator=rng)
    assert reconstruction_loss(x + 0.5, x).item() == pytest.approx(0.5)


def test_fine_detail_errors_count_only_at_the_fine_scale():
    # A +-1 checkerboard averages to zero over every 2x2 block: only the full-resolution term sees it.
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    assert reconstruction_loss(checker[None], torch.zeros(1, 8, 8)).item() == pytest.approx(1 / len(SCALES))


def test_odd_sizes_and_mismatches():
    assert reconstruction_loss(torch.ones(1, 7, 9), torch.zeros(1, 7, 9)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ"):
        reconstruction_loss(torch.ones(1, 7, 9), torch.zeros(1, 7, 8))


def test_total_loss_weights_the_summed_commitment():
    loss = total_loss(torch.tensor(1.0), torch.tensor([0.5, 0.25, 0.25]), commitment_weight=0.25)
    assert loss.item() == pytest.approx(1.25)
