"""One benchmark case, recorded the way `benchmarks/report.py` reads it.

Every bench file defines ``workload(impl, **shape)``: it allocates the inputs and returns a
zero-argument callable that runs the measured work once. :func:`record` puts the case in its
group, writes extra_info (``impl``; ``anchor`` for the implementation the group is compared with;
``peak_mib`` from a child process, see :mod:`benchmarks._memory`; whatever the callable carries in
its own ``extra_info`` dict), then times the callable with ``benchmark.pedantic``.
"""
from __future__ import annotations

from typing import Callable

from benchmarks._memory import peak_memory_mib


def record(benchmark, group: str, impl: str, workload: Callable[..., Callable[[], None]], *, rounds: int,
           warmup: int = 1, anchor: bool = False, memory: bool = True, **shape) -> None:
    """Time ``workload(impl=impl, **shape)()`` under ``group`` (one iteration per round).

    ``memory``: measure the peak memory of the same workload in a child process, which imports
    ``workload`` as ``"<module>:<name>"``: a module-level function of a bench file.
    """
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    if anchor:
        benchmark.extra_info["anchor"] = True
    if memory:
        benchmark.extra_info["peak_mib"] = peak_memory_mib(f"{workload.__module__}:{workload.__name__}", impl=impl,
                                                           **shape)
    run = workload(impl=impl, **shape)
    benchmark.extra_info.update(getattr(run, "extra_info", {}))
    benchmark.pedantic(run, warmup_rounds=warmup, rounds=rounds, iterations=1)
