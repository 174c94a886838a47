"""Side-by-side ratios for the benchmarks: one line per benchmark, relative to sda's in its group.

pytest-benchmark prints absolute times; since these machines are shared and noisy, the figure
worth recording is the ratio between implementations measured in the same run.
"""

import pytest


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    done = [b for b in getattr(session, "benchmarks", []) if b.stats is not None and not b.has_error]
    if not done:
        return
    groups = {}
    for b in done:
        groups.setdefault(b.group, []).append(b)
    write = terminalreporter.write_line
    terminalreporter.section("ratios (median; relative to the row marked *)")
    for group, benches in groups.items():
        base = next((b for b in benches if b.extra_info.get("baseline")), benches[0])
        write(f"{group}")
        for b in sorted(benches, key=lambda b: b.stats.median):
            mark = "*" if b is base else " "
            ratio = b.stats.median / base.stats.median
            write(f"  {mark} {b.name:<58} {b.stats.median * 1e3:9.2f} ms  {ratio:6.2f}x")
