"""``mlip.cli.malloc_tuning``: freed memory is reused instead of page-faulted in again each step."""

import os
import statistics
import subprocess
import sys
import textwrap

import pytest


def _probe(step: str) -> str:
    """A child process's script: apply the settings, define ``step`` (the given code), run it 3 times,
    then print the minor page faults per step over 10 more."""
    return textwrap.dedent("""
        import resource, torch
        from mlip.cli.malloc_tuning import keep_freed_memory
        print(keep_freed_memory())
    """) + textwrap.dedent(step) + textwrap.dedent("""
        for _ in range(3):
            step()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            step()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10)
    """)


PROBE = _probe("""
    torch.manual_seed(0)
    x = torch.randn(16, 16, 504, requires_grad=True)  # a symmetric contraction's sizes (MBs per tensor)
    w = torch.randn(16, 136, 16)
    iu = torch.triu_indices(16, 16)
    def step():
        q = x.index_select(1, iu[0]) * x.index_select(1, iu[1])
        y = (torch.bmm(w.transpose(1, 2), q) * x).sum()
        g, = torch.autograd.grad(y, x, create_graph=True)
        g.pow(2).sum().backward()
""")

#: blocks above glibc's largest mmap threshold (32 MiB): the per-edge tensors of MD on a few thousand atoms
LARGE_PROBE = _probe("""
    x = torch.randn(1 << 20)
    def step():
        y = x.repeat(12) * 2.0  # 48 MiB, allocated and freed once per step
        return float(y[-1])
""")


def _faults_per_step(tuning: str, probe: str = PROBE):
    env = dict(os.environ, MLIP_MALLOC_TUNING=tuning, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_kept_memory_removes_most_page_faults_and_can_be_turned_off():
    """Training-sized blocks (MBs). glibc adapts its thresholds as a process runs, so the fault counts
    of one process are erratic (by default 100-5,000 per step, with the settings 0-750 on the
    development machine): medians of three processes each."""
    runs = {tuning: [_faults_per_step(tuning) for _ in range(3)] for tuning in ("1", "0")}
    if not runs["1"][0][0]:
        pytest.skip("not glibc: mallopt unavailable")
    assert not any(applied for applied, _ in runs["0"])  # MLIP_MALLOC_TUNING=0 leaves malloc alone
    tuned, untuned = (statistics.median(f for _, f in runs[t]) for t in ("1", "0"))
    assert untuned > 200, runs  # each step faults its intermediates in again by default
    assert tuned < 0.4 * untuned, runs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_blocks_above_the_largest_mmap_threshold_are_kept_too():
    """A 48 MiB block per step: glibc maps it afresh on every step by default (12,288 pages); the
    settings serve it from the heap (``M_MMAP_MAX`` 0), so later steps reuse it."""
    applied, tuned = _faults_per_step("1", LARGE_PROBE)
    if not applied:
        pytest.skip("not glibc: mallopt unavailable")
    _, untuned = _faults_per_step("0", LARGE_PROBE)
    assert untuned > 10_000, untuned
    assert tuned < 0.25 * untuned, (tuned, untuned)


HUGE_PAGES_PROBE = textwrap.dedent("""
    print("started")  # printed twice: once before the restart, once after
    from mlip.cli.malloc_tuning import keep_freed_memory, restart_with_huge_pages
    restart_with_huge_pages()
    keep_freed_memory()
    import os, sys, torch
    x = torch.ones(64 << 20)  # 256 MiB, written
    rollup = open("/proc/self/smaps_rollup").read().splitlines()
    huge_kb = [int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:")][0]
    print(os.environ.get("GLIBC_TUNABLES"), huge_kb, " ".join(sys.argv[1:]))
""")


def test_entry_points_restart_with_huge_pages_for_malloc():
    """``restart_with_huge_pages`` (the entry points' first call) restarts the process once with
    ``glibc.malloc.hugetlb=1`` after the user's own tunables, the same arguments, and the restarted
    process's tensors lie in transparent huge pages; ``MLIP_MALLOC_TUNING=0`` leaves it alone, and
    so does a script read from standard input (it could not be read again)."""
    from mlip.cli.malloc_tuning import huge_pages_possible

    if not huge_pages_possible():
        pytest.skip("no glibc >= 2.35 with transparent huge pages here")
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=10", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE, "a", "b c"], capture_output=True, text=True,
                         env=env, check=True).stdout.splitlines()
    assert out[:2] == ["started", "started"]
    tunables, huge_kb, args = out[2].split(" ", 2)
    assert tunables == "glibc.malloc.tcache_count=10:glibc.malloc.hugetlb=1"
    assert args == "a b c"
    assert int(huge_kb) >= 64 * 1024  # at least a quarter of the tensor in 2 MiB pages
    env = dict(os.environ, MLIP_MALLOC_TUNING="0", OMP_NUM_THREADS="1")
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE], capture_output=True, text=True, env=env,
                         check=True).stdout.splitlines()
    assert out[0] == "started" and out[1].startswith("None ")  # no restart
    env.pop("MLIP_MALLOC_TUNING")
    out = subprocess.run([sys.executable, "-"], input=HUGE_PAGES_PROBE, capture_output=True, text=True, env=env,
                         check=True).stdout.splitlines()
    assert out[0] == "started" and out[1].startswith("None ")  # a script from stdin (read once) is not restarted
