"""CPU assignment benchmarks: sda's reference against the usual ways of doing the same work.

    make bench     (or: .venv/bin/python -m pytest bench/test_cpu_kernels.py --benchmark-only)

N = 65536 rows of D = 128 against K in {64, 256, 1024} codes. Two questions, one table per K:
  * indices + counts: sda.kernels.assign(with_sums=False) vs torch.cdist + argmin + bincount
    (target: >= 3x) and vector-quantize-pytorch's Codebook in eval mode (+ bincount);
  * + per-code sums: assign(with_sums=True) vs assign(with_sums=False) (target: <= 1.5x) and
    vector-quantize-pytorch's Codebook in training mode, whose EMA update computes the same sums.
vector-quantize-pytorch is optional (`pip install -e .[bench]`); its rows skip when it is absent.
"""

import pytest
import torch

from sda.kernels import assign, backend, reference

N, D = 65536, 128


@pytest.fixture(scope="module", params=[64, 256, 1024], ids=lambda k: f"K={k}")
def data(request):
    k = request.param
    g = torch.Generator().manual_seed(k)
    x, c = torch.randn(N, D, generator=g), torch.randn(k, D, generator=g)
    assert backend(x) == "torch"
    return x, c, assign(x, c, with_sums=False).indices


def setup(benchmark, data, baseline=False):
    x, c, _ = data
    benchmark.group = f"assign N={N} D={D} K={c.shape[0]}"
    benchmark.extra_info["baseline"] = baseline


def agree(indices, reference):
    """Benchmarks of different answers mean nothing: all but float near-ties must agree."""
    assert (indices == reference).float().mean() > 0.999


def test_sda_indices_counts(benchmark, data):
    setup(benchmark, data, baseline=True)
    x, c, _ = data
    benchmark(assign, x, c, with_sums=False)


def test_sda_indices_counts_sums(benchmark, data):
    setup(benchmark, data)
    x, c, _ = data
    benchmark(assign, x, c, with_sums=True)


def test_cdist_argmin_bincount(benchmark, data):
    setup(benchmark, data)
    x, c, ours = data

    def run():
        indices = torch.cdist(x, c).argmin(dim=1)
        return indices, torch.bincount(indices, minlength=c.shape[0])

    agree(benchmark(run)[0], ours)


def vqp_codebook(c, training):
    vqp = pytest.importorskip("vector_quantize_pytorch", reason="vector-quantize-pytorch not installed: "
                              "pip install -e .[bench] to compare against it")
    # The Euclidean codebook with EMA updates and no dead-code expiry, holding our codes.
    book = vqp.vector_quantize_pytorch.Codebook(dim=c.shape[1], codebook_size=c.shape[0], decay=0.8,
                                                threshold_ema_dead_code=0)
    with torch.no_grad():
        book.embed.copy_(c[None])
    return book.train(training)


def test_vqp_codebook_eval_bincount(benchmark, data):
    setup(benchmark, data)
    x, c, ours = data
    book = vqp_codebook(c, training=False)

    def run():
        with torch.no_grad():
            _, indices, _ = book(x[None])       # it takes [batch, n, d]
        indices = indices.flatten()
        return indices, torch.bincount(indices, minlength=c.shape[0])

    agree(benchmark(run)[0], ours)


def test_vqp_codebook_train_ema(benchmark, data):
    setup(benchmark, data)
    x, c, ours = data
    book = vqp_codebook(c, training=True)
    state = {k: v.clone() for k, v in book.state_dict().items()}

    def run():
        book.load_state_dict(state)   # every round starts from our codes
        with torch.no_grad():
            return book(x[None])[1].flatten()

    agree(benchmark(run), ours)


def test_cross_term_matmul_alone(benchmark, data):
    setup(benchmark, data)
    x, c, _ = data
    c_t = c.T.contiguous()
    rows = reference.CPU_CHUNK_BYTES // (4 * c.shape[0])
    out = torch.empty(rows, c.shape[0])

    def run():
        for chunk in x.split(rows):
            torch.mm(chunk, c_t, out=out[: len(chunk)])

    benchmark(run)
