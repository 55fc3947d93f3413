"""Template matching (ncc = TM_CCOEFF_NORMED), forward: fused op vs OpenCV, scikit-image and the
plain torch conv composition, all on the same threads (cv2.setNumThreads(torch.get_num_threads())).

Three size axes: the template side (8², 32², 64² on a 512² image), the image side (512² to
2048² with a 16² template) and the batch (N images x K templates of 256², 16²; OpenCV in a loop
over the N·K pairs as "opencv_loop"). The report compares every group with OpenCV.
"""
import cv2
import pytest
import torch
import torch.nn.functional as F

from benchmarks._record import record
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.ops import match_template

cv2.setNumThreads(torch.get_num_threads())

TEMPLATE_SIDES = [8, 32, 64]  # on a 512² image
IMAGE_SIDES = [512, 1024, 2048]  # with a 16² template
BATCHES = [(2, 4), (8, 16), (16, 32)]  # N images x K templates, 256², 16²


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


CPU_LIBRARIES = ("opencv", "opencv_loop", "skimage")
ONE_PAIR_IMPLS = ["fused", "opencv", "skimage", "composition"]  # one image, one template
BATCHED_IMPLS = ["fused", "opencv_loop", "composition"]


def each_impl_and_device(impls):
    """Parametrize a case over ``impls`` and every device (the CPU libraries are skipped on CUDA)."""
    def wrap(test):
        return pytest.mark.parametrize("impl", impls)(pytest.mark.parametrize("device", DEVICES)(test))

    return wrap


def _record_match(benchmark, impl, device, axis, batch, templates, side, templ_side):
    if device == "cuda" and impl in CPU_LIBRARIES:
        pytest.skip("CPU library")
    pairs = f"N{batch}×K{templates} " if batch * templates > 1 else ""
    # Many rounds for the short calls (this machine is noisy): the round budget picks them.
    record(benchmark, f"match ncc {device} {pairs}{side}²·{templ_side}²", impl, workload, budget_s=0.5,
           max_rounds=100,
           anchor=impl in ("opencv", "opencv_loop"),  # the report compares every match group with OpenCV
           memory=impl in ("fused", "composition"),  # torch tensors; OpenCV/skimage allocate outside torch
           axis=axis, device=device, batch=batch, templates=templates, side=side, templ_side=templ_side)


@each_impl_and_device(ONE_PAIR_IMPLS)
@pytest.mark.parametrize("templ_side", TEMPLATE_SIDES, ids=lambda t: f"t{t}")
def test_match_template_side(benchmark, impl, templ_side, device):
    _record_match(benchmark, impl, device, ("template side", templ_side), 1, 1, side=512, templ_side=templ_side)


@each_impl_and_device(ONE_PAIR_IMPLS)
@pytest.mark.parametrize("side", IMAGE_SIDES, ids=lambda s: f"{s}sq")
def test_match_image_side(benchmark, impl, side, device):
    _record_match(benchmark, impl, device, ("image side", side), 1, 1, side=side, templ_side=16)


@each_impl_and_device(BATCHED_IMPLS)
@pytest.mark.parametrize("case", BATCHES, ids=lambda c: f"N{c[0]}-K{c[1]}")
def test_match_batched(benchmark, impl, case, device):
    n, k = case
    _record_match(benchmark, impl, device, ("N·K pairs", n * k), n, k, side=256, templ_side=16)
