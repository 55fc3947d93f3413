"""Peak-memory measurement for benchmarks, in a fresh child process.

CPU: tracemalloc does not see tensor memory and glibc keeps freed blocks, so we measure RSS
growth: the child allocates its inputs, runs the workload once to warm up, resets VmHWM through
/proc/self/clear_refs, runs it again, and reports VmHWM minus the RSS before that run. The child
starts with MALLOC_MMAP_THRESHOLD_=65536 so large blocks are returned to the OS when freed.
CUDA: torch.cuda.max_memory_allocated() growth over the same run.

The children are forked from a fork server that imported torch and perceptual_ext once (and never
ran an op, so no thread pool is forked), which saves the ~2 s import per probe; set
``BENCH_MEMORY_PROBE=subprocess`` for a fresh interpreter per probe instead.
"""
from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(target: str, kwargs: dict) -> int:
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
    return int(peak)


def _child(target: str, kwargs: dict) -> None:
    print(json.dumps({"peak_bytes": _measure(target, kwargs)}))


def _serve() -> None:
    """Fork server: import torch and perceptual_ext once, then fork one child per probe request
    (a JSON line ``[target, kwargs]`` on stdin) and answer with the child's JSON line on stdout.
    The server itself never runs an op, so no thread pool is forked."""
    import torch  # noqa: F401

    import perceptual_ext  # noqa: F401  (the imports every probe would pay)

    for line in sys.stdin:
        target, kwargs = json.loads(line)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                message = {"peak_bytes": _measure(target, kwargs)}
            except BaseException:
                message = {"error": traceback.format_exc()[-4000:]}
            with os.fdopen(write_fd, "w") as f:
                f.write(json.dumps(message))
            os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            answer = f.read()
        _, status = os.waitpid(pid, 0)
        if not answer:
            answer = json.dumps({"error": f"the probe process died (wait status {status})"})
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


_SERVER = None


def _server():
    global _SERVER
    if _SERVER is None or _SERVER.poll() is not None:
        code = "import sys; sys.path.insert(0, %r); from benchmarks._memory import _serve; _serve()" % ROOT
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        _SERVER = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env, text=True)
        atexit.register(_SERVER.stdin.close)
    return _SERVER


def _peak_forked(target: str, kwargs: dict) -> int:
    server = _server()
    server.stdin.write(json.dumps([target, kwargs]) + "\n")
    server.stdin.flush()
    line = server.stdout.readline()
    if not line:
        raise RuntimeError(f"memory probe {target}: the fork server exited (code {server.wait()})")
    answer = json.loads(line)
    if "error" in answer:
        raise RuntimeError(f"memory probe {target} failed:\n{answer['error'][-2000:]}")
    return answer["peak_bytes"]


def peak_memory_mib(target: str, **kwargs) -> float:
    """Peak memory (MiB) of ``target(**kwargs)()`` run in a child process.

    ``target`` is ``"module:function"``; the function allocates the inputs and returns a
    zero-argument callable that runs the workload once (e.g. forward + backward).
    """
    if os.environ.get("BENCH_MEMORY_PROBE", "fork") != "subprocess" and hasattr(os, "fork"):
        return _peak_forked(target, kwargs) / 2**20
    code = ("import sys; sys.path.insert(0, %r); from benchmarks._memory import _child; _child(%r, %r)"
            % (ROOT, target, kwargs))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {target} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
