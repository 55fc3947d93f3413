import os
import platform
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._record import SKIPPED  # noqa: E402


def _load() -> list:
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return []


_LOAD_AT_START = _load()

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def backward_run(loss, x: torch.Tensor, device: str):
    """A workload's callable: ``loss().backward()`` (gradient w.r.t. the leaf ``x``), then a sync."""

    def run():
        loss().backward()
        sync(device)
        x.grad = None  # released inside the run, so the memory probe sees it as peak growth

    return run


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the report prints beside the table: torch, its threads, the cores, the GPU if any."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["platform"] = platform.platform()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Cases skipped for memory (with their reason) and the load average around the run."""
    output_json["skipped"] = list(SKIPPED)
    output_json["load_average"] = {"start": _LOAD_AT_START, "end": _load()}
