import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
