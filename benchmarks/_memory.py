"""Peak-memory measurement for benchmarks, in a fresh child process.

CPU: tracemalloc does not see tensor memory and glibc keeps freed blocks, so we measure RSS
growth: the child allocates its inputs, runs the workload once to warm up, resets VmHWM through
/proc/self/clear_refs, runs it again, and reports VmHWM minus the RSS before that run. The child
starts with MALLOC_MMAP_THRESHOLD_=65536 so large blocks are returned to the OS when freed.
CUDA: torch.cuda.max_memory_allocated() growth over the same run.
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(target: str, kwargs: dict) -> None:
    import torch

    module, func = target.split(":")
    run = getattr(importlib.import_module(module), func)(**kwargs)
    run()  # warm-up: thread pools, lazy initialization, allocator caches
    gc.collect()
    if kwargs.get("device", "cpu") == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _status_kib("VmRSS") * 1024
        run()
        peak = _status_kib("VmHWM") * 1024 - base
    print(json.dumps({"peak_bytes": int(peak)}))


def peak_memory_mib(target: str, **kwargs) -> float:
    """Peak memory (MiB) of ``target(**kwargs)()`` run in a child process.

    ``target`` is ``"module:function"``; the function allocates the inputs and returns a
    zero-argument callable that runs the workload once (e.g. forward + backward).
    """
    code = ("import sys; sys.path.insert(0, %r); from benchmarks._memory import _child; _child(%r, %r)"
            % (ROOT, target, kwargs))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {target} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
