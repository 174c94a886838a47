import os
import random
import zlib

import pytest

# The Triton kernels run on CPU through Triton's interpreter, which is chosen when a kernel is
# decorated, i.e. when sda.kernels is first imported. So this must precede every import of it.
# SDA_TEST_DEVICE=cuda is the way out: tests/test_kernels_assign_triton.py then runs the compiled
# kernel on CUDA tensors (bench/gpu_check.py does, with TRITON_INTERPRET unset), so the interpreter
# must stay off; every other test module is for CPU and is not meant to run that way.
if os.environ.get("SDA_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tests draw fresh random inputs each run; the seed is in the report header so that a failure
# can be replayed with SDA_TEST_SEED=<seed>.
SEED = int(os.environ.get("SDA_TEST_SEED") or random.randrange(2**31))


def pytest_report_header(config):
    return f"SDA_TEST_SEED={SEED}"


@pytest.fixture
def rng(request):
    """A torch.Generator seeded from the run's seed and the test's own id."""
    import torch

    return torch.Generator().manual_seed(SEED ^ zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def seeded(rng):
    """rng, with torch's global generator (k-means, dead-code replacement) seeded from it too."""
    import torch

    torch.manual_seed(int(torch.randint(2**31, (1,), generator=rng)))
    return rng


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A small generated collection (6 files, mixed formats, rates and channels) for training runs."""
    from sda.data.synth import write_collection

    return write_collection(tmp_path_factory.mktemp("kit"), n_files=6, seed=1)[0].parent


@pytest.fixture(autouse=True)
def decoded_cache(tmp_path_factory, monkeypatch):
    """Every test's decoded-audio cache (sda.data.cache) is its own empty folder, never the user's ~/.cache; the
    environment carries it to the sda processes a test starts."""
    from sda.config import CACHE_DIR_ENV

    directory = tmp_path_factory.mktemp("decoded-cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(directory))
    return directory
