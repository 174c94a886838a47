"""Where the time of a 200 MB .sda read goes: CRC-32, allocating fresh memory, reading with each backend.

    .venv/bin/python bench/sdafile_breakdown.py
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python bench/sdafile_breakdown.py   # torch allocates huge pages

Best of 7. Repeated reads may reuse memory freed by the read before, so the read rows depend on what
ran before them; the CRC and allocation rows do not.
"""

import os
import tempfile
import time
import zlib

import torch

from sda import _sdafile
from sda.format import container


def best_ms(work, rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {f"w{i}": torch.randn(6_250_000 // 256, 256, generator=g) for i in range(8)}  # 8 x 25 MB
    data = torch.cat([t.flatten() for t in tensors.values()]).view(torch.uint8)
    raw = data.numpy()
    print(f"CRC-32 of 200 MB: sda._sdafile ({_sdafile.CRC32_IMPL}) {best_ms(lambda: _sdafile.crc32(raw)):.1f} ms, "
          f"zlib {best_ms(lambda: zlib.crc32(raw)):.1f} ms")
    fill = best_ms(lambda: torch.empty(data.numel(), dtype=torch.uint8).copy_(data))
    print(f"allocate + fill 200 MB (torch.empty + copy_): {fill:.1f} ms")
    path = os.path.join(tempfile.mkdtemp(), "m.sda")
    container.write(path, tensors, {})
    for backend in ("cpp", "python"):
        container.set_backend(backend)
        verified = best_ms(lambda: container.read(path))
        unverified = best_ms(lambda: container.read(path, verify=False))
        print(f"{backend}: verified read {verified:.1f} ms, unverified {unverified:.1f} ms")


if __name__ == "__main__":
    main()
