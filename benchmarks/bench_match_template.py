"""Template matching (ncc = TM_CCOEFF_NORMED), forward: fused op vs OpenCV, scikit-image and the
plain torch conv composition, all on the same threads (cv2.setNumThreads(torch.get_num_threads())).

Groups: 512² grayscale with templates 8², 32², 64²; a batch of N=8 images x K=16 templates
(256², 16²; OpenCV in a loop over the 128 pairs as "opencv_loop"); 2048² with 64².
"""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks._record import record
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.ops import match_template

cv2.setNumThreads(torch.get_num_threads())

SINGLE = [(512, 8), (512, 32), (512, 64), (2048, 64)]
BATCH = (8, 16, 256, 16)  # N images, K templates, image side, template side


def composition(image, templ):
    """NCC from torch.conv2d: the centred template's correlation over sqrt of the window variance."""
    _, c, h, w = templ.shape
    m = h * w
    g = templ - templ.mean((2, 3), keepdim=True)
    cross = F.conv2d(image, g)
    box = torch.ones(1, 1, h, w, dtype=image.dtype, device=image.device)
    s1 = F.conv2d(image.reshape(-1, 1, *image.shape[2:]), box).reshape(image.shape[0], c, *cross.shape[2:])
    s2 = F.conv2d(image.square().sum(1, keepdim=True), box)
    f_var = (s2 - s1.square().sum(1, keepdim=True) / m).clamp_min(0)
    g_var = g.square().sum((1, 2, 3)).view(1, -1, 1, 1)
    return (cross / (f_var * g_var).sqrt()).nan_to_num(0.0).clamp(-1, 1)


def _skimage(image, templ):
    from skimage.feature import match_template as sk_match

    return sk_match(image[0, 0].numpy(), templ[0, 0].numpy())


def _opencv(image, templ):
    return cv2.matchTemplate(image[0, 0].numpy(), templ[0, 0].numpy(), cv2.TM_CCOEFF_NORMED)


def _opencv_loop(image, templ):
    imgs = [x[0].numpy() for x in image]
    tpls = [t[0].numpy() for t in templ]
    return [[cv2.matchTemplate(i, t, cv2.TM_CCOEFF_NORMED) for t in tpls] for i in imgs]


IMPLS = {"fused": lambda i, t: match_template(i, t, "ncc"), "composition": composition, "opencv": _opencv,
         "opencv_loop": _opencv_loop, "skimage": _skimage}


def workload(impl: str, batch: int, templates: int, side: int, templ_side: int, device: str = "cpu"):
    """Inputs allocated once (templates cut from the images plus noise); the callable runs one match."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 1, side, side, generator=generator)
    starts = torch.randint(0, side - templ_side + 1, (templates, 2), generator=generator).tolist()
    templ = torch.stack([image[k % batch, :, y:y + templ_side, x:x + templ_side] for k, (y, x) in enumerate(starts)])
    templ = templ + 0.05 * torch.rand(templ.shape, generator=generator)
    image, templ = image.to(device), templ.to(device)
    fn = IMPLS[impl]

    def run():
        fn(image, templ)
        sync(device)

    return run


def _record_match(benchmark, group, impl, device, **shape):
    # Many rounds (the calls are short and this machine is noisy); the conv composition at 2048²
    # takes seconds a call, so three.
    large = shape["side"] >= 2048
    record(benchmark, group, impl, workload, rounds=(3 if impl == "composition" else 9) if large else 30, warmup=2,
           anchor=impl in ("opencv", "opencv_loop"),  # the report compares every match group with OpenCV
           memory=impl in ("fused", "composition"),  # torch tensors; OpenCV/skimage allocate outside torch
           device=device, **shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", SINGLE, ids=lambda c: f"{c[0]}sq-t{c[1]}")
@pytest.mark.parametrize("impl", ["fused", "opencv", "skimage", "composition"])
def test_match_single(benchmark, impl, case, device):
    side, templ_side = case
    if device == "cuda" and impl in ("opencv", "skimage"):
        pytest.skip("CPU library")
    _record_match(benchmark, f"match ncc {device} {side}²·{templ_side}²", impl, device, batch=1, templates=1, side=side,
            templ_side=templ_side)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["fused", "opencv_loop", "composition"])
def test_match_batched(benchmark, impl, device):
    n, k, side, templ_side = BATCH
    if device == "cuda" and impl == "opencv_loop":
        pytest.skip("CPU library")
    _record_match(benchmark, f"match ncc {device} N{n}×K{k} {side}²·{templ_side}²", impl, device, batch=n, templates=k,
            side=side, templ_side=templ_side)
