"""sda.model.codebook: k-means, the EMA update, dead-code replacement, and the invariant that ties them."""

import pytest
import torch

from sda.model.codebook import EMACodebook, kmeans, laplace


def mixture(rng, centers, n):
    """n points [n, D] around random choices of centers [C, D] (noise 0.01), and their labels [n]."""
    labels = torch.randint(centers.shape[0], (n,), generator=rng)
    return centers[labels] + 0.01 * torch.randn(n, centers.shape[1], generator=rng), labels


def separated_centers(rng, c, d, scale=3.0):
    return scale * torch.randn(c, d, generator=rng)


def assert_invariant(cb: EMACodebook):
    torch.testing.assert_close(cb.embed, cb.embed_sum / laplace(cb.cluster_size)[:, None], rtol=1e-5, atol=1e-6)


def test_laplace_keeps_the_total_and_removes_zeros():
    sizes = torch.tensor([0.0, 3.0, 1.0, 0.0])
    smoothed = laplace(sizes)
    assert torch.all(smoothed > 0)
    torch.testing.assert_close(smoothed.sum(), sizes.sum())


def test_kmeans_finds_well_separated_clusters(seeded):
    centers = separated_centers(seeded, 8, 16)
    x, labels = mixture(seeded, centers, 2000)
    centroids, counts = kmeans(x, 8, iters=10)
    # Each true center has exactly one centroid next to it, and the counts are the cluster sizes.
    nearest = torch.cdist(centers, centroids).argmin(dim=1)
    assert sorted(nearest.tolist()) == list(range(8))
    torch.testing.assert_close(centroids[nearest], centers, atol=0.01, rtol=0)
    assert counts[nearest].tolist() == torch.bincount(labels, minlength=8).tolist()


def test_kmeans_with_fewer_points_than_codes_still_gives_k_codes(seeded):
    x = torch.randn(5, 4, generator=seeded)
    centroids, counts = kmeans(x, 16, iters=3)
    assert centroids.shape == (16, 4) and counts.sum() == 5


def test_initialization_sets_centroids_with_consistent_statistics(seeded):
    centers = separated_centers(seeded, 8, 16)
    x, _ = mixture(seeded, centers, 1000)
    cb = EMACodebook(8, 16, decay=0.9, dead_code_threshold=0.0)
    cb.initialize(x)
    assert bool(cb.initialized)
    assert_invariant(cb)
    assert cb.cluster_size.sum() == 1000
    torch.testing.assert_close(torch.cdist(centers, cb.embed).min(dim=1).values, torch.zeros(8), atol=0.01, rtol=0)


@pytest.mark.parametrize("decay", [0.5, 0.95, 0.99])
def test_ema_steps_after_kmeans_do_not_shrink_codes(seeded, decay):
    centers = separated_centers(seeded, 8, 16)
    cb = EMACodebook(8, 16, decay=decay, dead_code_threshold=0.0)
    cb.initialize(mixture(seeded, centers, 1000)[0])
    norms = cb.embed.norm(dim=1).clone()
    for _ in range(50):
        cb(mixture(seeded, centers, 64)[0])  # small batches: usage per step is far below the init's
        assert_invariant(cb)
    ratio = cb.embed.norm(dim=1) / norms
    assert ratio.min() > 0.99 and ratio.max() < 1.01, ratio
    torch.testing.assert_close(torch.cdist(centers, cb.embed).min(dim=1).values, torch.zeros(8), atol=0.02, rtol=0)


def test_unused_codes_stay_exactly_where_they_are(seeded):
    centers = separated_centers(seeded, 8, 16)
    cb = EMACodebook(8, 16, decay=0.9, dead_code_threshold=0.0)
    cb.initialize(mixture(seeded, centers, 1000)[0])
    before = cb.embed.clone()
    # Feed only the neighbourhood of code 0 for many steps: its usage decays for none of the others.
    near_zero = cb.embed[0] + 0.001 * torch.randn(64, 16, generator=seeded)
    for _ in range(100):
        cb(near_zero)
    assert torch.equal(cb.embed[1:], before[1:])
    assert cb.cluster_size[1:].max() < 1e-2  # they really were unused for a long time
    assert_invariant(cb)


def test_one_ema_step_matches_the_formula(seeded):
    cb = EMACodebook(4, 3, decay=0.8, dead_code_threshold=0.0)
    cb.initialize(torch.randn(100, 3, generator=seeded))
    size, total = cb.cluster_size.clone(), cb.embed_sum.clone()
    x = cb.embed[torch.tensor([0, 0, 1, 2])] + 0.1  # codes 0, 1, 2 used; 3 not
    cb(x)
    counts = torch.tensor([2.0, 1.0, 1.0, 0.0])
    sums = torch.stack([x[0] + x[1], x[2], x[3], torch.zeros(3)])
    new_size = 0.8 * size + 0.2 * counts
    torch.testing.assert_close(cb.cluster_size, new_size)
    expected = (0.8 * total + 0.2 * sums) / laplace(new_size)[:, None]
    torch.testing.assert_close(cb.embed[:3], expected[:3])


def test_a_replaced_code_keeps_its_new_value_after_the_replacing_step(seeded):
    centers = separated_centers(seeded, 4, 8)
    cb = EMACodebook(5, 8, decay=0.9, dead_code_threshold=0.5)
    cb.initialize(mixture(seeded, centers, 400)[0])
    # Code 4 far from all data, never chosen, and its statistics say so: dead.
    cb._set_codes(torch.arange(5) == 4, torch.full((1, 8), 100.0), torch.zeros(1))
    x, _ = mixture(seeded, centers, 256)
    out = cb(x)
    assert out.replaced == 1 and out.counts[4] == 0
    # The code now is one of this step's vectors (not 100s, not an EMA blend of the two).
    assert (x == cb.embed[4]).all(dim=1).any()
    assert cb.cluster_size[4] == 1.0  # twice the threshold
    assert_invariant(cb)
    # And the next step keeps it unless real assignments move it.
    replaced = cb.embed[4].clone()
    far = centers[:1] + 0.01 * torch.randn(64, 8, generator=seeded)
    if cb(far).counts[4] == 0:
        assert torch.equal(cb.embed[4], replaced)


def test_a_replaced_code_attracts_data_and_lives(seeded):
    cb = EMACodebook(4, 2, decay=0.9, dead_code_threshold=0.5)
    centers = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    x = centers.repeat_interleave(16, dim=0) + 0.01 * torch.randn(64, 2, generator=seeded)
    cb.initialize(centers[:1].repeat(16, 1))  # k-means saw one point: three duplicate codes, unused
    assert cb.cluster_size.tolist() == [16.0, 0.0, 0.0, 0.0]
    def error():
        return torch.cdist(x, cb.embed).min(dim=1).values.square().mean()

    before = error()  # 25: every point quantised to the first center
    out = cb(x)
    assert out.replaced == 3
    for code in cb.embed[1:]:
        assert (x == code).all(dim=1).any()  # re-seeded from this step's vectors
    # Each replaced code is the nearest code to the row it came from: exactly, in float64 (two rows of
    # one cluster may be close enough for float32 distances to tie, and ties go to the lower index).
    # Code 0 may lose all its rows: the update moved it toward the mean of every row.
    nearest = torch.cdist(x.double(), cb.embed.double()).argmin(dim=1)
    assert (nearest.bincount(minlength=4)[1:] > 0).all()
    for _ in range(30):
        cb(x)
    # The error falls: to zero when the new codes landed in separate clusters, to 8.3 at worst
    # (three codes in the first cluster, one shared by the others: a local minimum of k-means).
    assert error() < before / 2


def test_eval_mode_never_changes_the_codebook(seeded):
    cb = EMACodebook(16, 8, dead_code_threshold=10.0)  # everything would count as dead in training
    for initialized in (False, True):
        if initialized:
            cb.initialize(torch.randn(100, 8, generator=seeded))
        cb.eval()
        before = {k: v.clone() for k, v in cb.state_dict().items()}
        for _ in range(3):
            out = cb(torch.randn(50, 8, generator=seeded))
            assert out.replaced == 0 and out.counts.sum() == 50
        after = cb.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        cb.train()


def test_training_on_an_empty_batch_changes_nothing():
    cb = EMACodebook(4, 3)
    before = {k: v.clone() for k, v in cb.state_dict().items()}
    out = cb(torch.empty(0, 3))
    assert out.indices.shape == (0,) and not bool(cb.initialized)
    # Usage decays (a step happened) but no code moves and nothing is re-seeded from nothing.
    assert torch.equal(cb.embed, before["embed"]) and out.replaced == 0
