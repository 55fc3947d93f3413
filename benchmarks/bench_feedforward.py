"""Fast style transfer (seed 003's speed table): one transform-net forward vs optimization.

``transform_net``: a trained-once StyleTransformNet (Johnson's architecture, instance norm) run
on one image, no grad. ``optimization`` (the anchor): Gatys-style stylization of the same image
by OPT_STEPS Adam steps on its pixels under content + style losses (``vgg`` + ``gram`` of
:mod:`perceptual_ext.losses.factory`; pixel ``mse`` where those losses are not installed, which is
recorded in extra_info["loss"]). Johnson et al. report speed-ups for 100-500 L-BFGS iterations;
the optimization time grows linearly with the step count, so multiply our speed-up by
steps/OPT_STEPS to compare. On CUDA ``transform_net_amp`` adds float16 autocast. Sides 32² to
128² (optimization at 512² takes a minute a call, too long for `make bench`); the optimization runs
once per size (its first step warms up the second), no memory probe.
"""
import pytest
import torch

from benchmarks._record import record
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.models import StyleTransformNet

SIZES = [32, 64, 128]
OPT_STEPS = 2


def _losses():
    from perceptual_ext.losses.factory import build_loss

    try:
        return "vgg+gram", build_loss("vgg"), build_loss("gram")
    except ImportError:
        return "mse", build_loss("mse"), build_loss("mse")


def workload(impl: str, size: int, device: str = "cpu"):
    """Inputs built once; the returned callable stylizes the image once."""
    torch.manual_seed(0)
    content = torch.rand(1, 3, size, size, device=device)
    if impl.startswith("transform_net"):
        net = StyleTransformNet().to(device).eval()
        amp = impl.endswith("amp")

        def run():
            with torch.no_grad(), torch.autocast(device, dtype=torch.float16, enabled=amp):
                net(content)
            sync(device)

        return run
    name, content_loss, style_loss = _losses()
    content_loss, style_loss = content_loss.to(device), style_loss.to(device)
    style = torch.rand(1, 3, size, size, device=device)

    def run():
        image = content.clone().requires_grad_(True)
        opt = torch.optim.Adam([image], lr=0.02)
        for _ in range(OPT_STEPS):
            opt.zero_grad(set_to_none=True)
            (content_loss(image, content) + 5.0 * style_loss(image, style)).backward()
            opt.step()
        sync(device)

    run.extra_info = {"loss": name, "opt_steps": OPT_STEPS}
    return run


IMPLS = ["transform_net", "optimization"]


@pytest.mark.parametrize("impl", IMPLS + ["transform_net_amp"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIZES)
def test_stylize(benchmark, impl, size, device):
    if impl == "transform_net_amp" and device != "cuda":
        pytest.skip("autocast float16 is measured on CUDA only")
    optimization = impl == "optimization"
    record(benchmark, f"stylize {device} {size}x{size}", impl, workload, rounds=1 if optimization else None,
           warmup=0 if optimization else 1, memory=False, axis=("image side", size), size=size, device=device)
