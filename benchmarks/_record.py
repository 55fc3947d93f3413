"""One benchmark case, recorded the way `benchmarks/report.py` reads it.

Every bench file defines ``workload(impl, **shape)``: it allocates the inputs and returns a
zero-argument callable that runs the measured work once. :func:`record` puts the case in its
group and writes extra_info:

- ``impl``; ``anchor`` for the implementation the group is compared with;
- ``op``: the op or loss the case belongs to (one plot each; default: the bench file's name
  without ``bench_``);
- ``axis``: ``[label, value]``, where the case lies on its size axis (image side, batch, template
  side, ...), so time and memory can be read as curves; ``shape``: the workload's arguments;
- ``peak_mib`` from a child process (see :mod:`benchmarks._memory`);
- whatever the callable carries in its own ``extra_info`` dict;

then times the callable with ``benchmark.pedantic``. :func:`skip_over_memory` skips a case whose
estimated peak memory exceeds the limit and records it (group, impl, size, reason) under
``"skipped"`` in the results JSON (see ``benchmarks/conftest.py``).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence

import pytest

from benchmarks._memory import peak_memory_mib

#: Timing budget of one case when ``rounds`` is not given: rounds = budget / (time of one call).
ROUND_BUDGET_S = 1.0
MAX_ROUNDS = 30

#: Cases skipped by :func:`skip_over_memory`, written to the results JSON by conftest.py.
SKIPPED: list = []


def _op_of(workload: Callable) -> str:
    module = workload.__module__.rsplit(".", 1)[-1]
    return module[len("bench_"):] if module.startswith("bench_") else module


def _jsonable(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def record(benchmark, group: str, impl: str, workload: Callable[..., Callable[[], None]], *,
           rounds: Optional[int] = None, warmup: int = 1, anchor: bool = False, memory: bool = True,
           op: Optional[str] = None, axis: Optional[Sequence] = None, budget_s: float = ROUND_BUDGET_S,
           max_rounds: int = MAX_ROUNDS, **shape) -> None:
    """Time ``workload(impl=impl, **shape)()`` under ``group`` (one iteration per round).

    Args:
        rounds: timed rounds; ``None`` picks ``budget_s / t`` (between 1 and ``max_rounds``) from
            the fastest warm-up call ``t``, so short calls get many rounds and a case costs about
            ``budget_s`` whatever its size.
        warmup: untimed calls first (at least one when ``rounds`` is ``None``).
        memory: measure the peak memory of the same workload in a child process, which imports
            ``workload`` as ``"<module>:<name>"``: a module-level function of a bench file.
        op: the op or loss this case belongs to (default: from the bench file's name).
        axis: ``(label, value)``: the case's place on its size axis, e.g. ``("image side", 256)``.
    """
    benchmark.group = group
    info = benchmark.extra_info
    info["impl"] = impl
    info["op"] = op or _op_of(workload)
    if axis is not None:
        label, value = axis
        info["axis"] = [str(label), float(value)]
    info["shape"] = {k: _jsonable(v) for k, v in shape.items()}
    if anchor:
        info["anchor"] = True
    if memory:
        info["peak_mib"] = peak_memory_mib(f"{workload.__module__}:{workload.__name__}", impl=impl, **shape)
    run = workload(impl=impl, **shape)
    info.update(getattr(run, "extra_info", {}))
    if rounds is None:
        # Untimed calls: the warm-up ones, plus up to three in all while they are cheap; their fastest
        # sets the rounds (one call slowed down by a busy machine does not cut the rounds to one).
        times = []
        while len(times) < max(1, warmup) or (len(times) < 3 and sum(times) < budget_s / 4):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        rounds = int(min(max_rounds, max(1, budget_s // max(min(times), 1e-9))))
        warmup = 0
    benchmark.pedantic(run, warmup_rounds=warmup, rounds=rounds, iterations=1)


def memory_limit_mib(device: str = "cpu") -> float:
    """Largest estimated peak a case may take: ``BENCH_MEMORY_LIMIT_MIB``, else 3 GiB on the CPU
    (the benchmark machine is shared; no swap) and 80 % of the GPU's memory on CUDA."""
    if "BENCH_MEMORY_LIMIT_MIB" in os.environ:
        return float(os.environ["BENCH_MEMORY_LIMIT_MIB"])
    if device == "cuda":
        import torch

        return 0.8 * torch.cuda.get_device_properties(0).total_memory / 2**20
    return 3072.0


def skip_over_memory(group: str, impl: str, estimate_mib: float, *, device: str = "cpu", op: str,
                     axis: Optional[Sequence] = None) -> None:
    """Skip this case (``pytest.skip``) when ``estimate_mib`` exceeds :func:`memory_limit_mib`,
    and record the skip with its reason for the results JSON."""
    limit = memory_limit_mib(device)
    if estimate_mib <= limit:
        return
    reason = (f"{impl} would need ~{estimate_mib / 1024:.1f} GiB (estimated), over the {limit / 1024:.1f} GiB "
              f"limit (BENCH_MEMORY_LIMIT_MIB)")
    entry = {"group": group, "impl": impl, "op": op, "reason": reason, "estimate_mib": float(estimate_mib)}
    if axis is not None:
        entry["axis"] = [str(axis[0]), float(axis[1])]
    SKIPPED.append(entry)
    pytest.skip(reason)


__all__ = ["MAX_ROUNDS", "ROUND_BUDGET_S", "SKIPPED", "memory_limit_mib", "record", "skip_over_memory"]
