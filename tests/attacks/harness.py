"""Helpers for the attack tests: every hostile input is built by its test, and run where it cannot hurt.

    from attacks.harness import limited, refused
    result = limited([sys.executable, "-m", "sda", "info", str(bad)], memory_gb=6, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr

`limited` runs a command in a subprocess under an address-space limit (RLIMIT_AS; importing torch
alone maps about 3.3 GB of it) and a wall-clock timeout, so a memory bomb fails its test with
MemoryError or a refusal instead of taking the machine, and a hang fails by timeout.
"""

import os
import resource
import subprocess
import sys

GB = 1 << 30


def limited(args, memory_gb: float = 6, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """args run with RLIMIT_AS = memory_gb and a timeout (subprocess.TimeoutExpired fails the test)."""
    limit = int(memory_gb * GB)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap, env=env, **kwargs)


def sda_limited(*args, memory_gb: float = 6, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """`python -m sda ARGS` under limited()."""
    return limited([sys.executable, "-m", "sda", *args], memory_gb=memory_gb, timeout=timeout, **kwargs)


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    """The CLI's refusal of bad input: exit 2, one 'sda: error:' message holding every word, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    for word in words:
        assert word.lower() in output.lower(), f"{word!r} not in:\n{output}"

