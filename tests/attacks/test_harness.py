"""The harness itself: a limit that does not bite would make every memory test pass."""

import sys

from attacks.harness import limited


def test_the_memory_limit_refuses_a_large_allocation():
    result = limited([sys.executable, "-c", "bytearray(3 << 30)"], memory_gb=1, timeout=30)
    assert result.returncode != 0 and "MemoryError" in result.stderr
