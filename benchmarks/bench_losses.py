"""The losses as users call them, forward + backward, each beside the composition users would
write in plain PyTorch, over three sizes.

``ours`` is the loss module with its defaults (``loss(input, target).backward()``, the input
requiring grad, the target not); the anchor ``composition`` computes the same value with torch ops
only, from the same random features / weights, the way a user would write it (the target through
the same function; autograd keeps no graph for it since it needs no grad):

- PatchMMDLoss (F = 1024, P = 3, W = 32, S = 16, features redrawn per call): reflect pad, conv2d,
  cos, avg_pool2d on both images, mean squared difference.
- MMDPlusPlus (F = 512, channel-mean features, local robust term, L2): the same plus the local
  term's box filter and the L2 term.
- SCNNLoss (C = 1024, D = 6): the nn.Sequential of bench_scnn.py on both images, MSE.
- PerceptualLoss (VGG16 relu1_2..relu4_3, random weights, ``feature="both"``: feature l2 + Gram
  style term): a plain nn.Sequential VGG16 with the same weights, Gram matrices by torch.bmm.
- StyleLoss (the four Gram layers of a VGG16 on a side² image, batch 4, target Grams kept):
  torch.bmm Gram matrices against the same kept target Grams.
- NCCLoss (batch 8, RGB): per-sample NCC in float32 torch ops (ours sums in float64).

Each case records time and peak memory (child process); a composition that would exceed the
memory limit is skipped and the skip recorded with its reason (see benchmarks/_record.py).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._record import record, skip_over_memory
from benchmarks.bench_scnn import composition_of
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.losses import MMDPlusPlus, NCCLoss, PatchMMDLoss, PerceptualLoss, SCNNLoss, StyleLoss

LOSSES = ["PatchMMDLoss", "MMDPlusPlus", "SCNNLoss", "PerceptualLoss", "StyleLoss", "NCCLoss"]

#: Image sides per loss (one image unless the loss says otherwise).
SIDES = {
    "PatchMMDLoss": [128, 256, 512],
    "MMDPlusPlus": [64, 128, 256],
    "SCNNLoss": [32, 48, 64],
    "PerceptualLoss": [32, 64, 128],
    "StyleLoss": [32, 64, 128],
    "NCCLoss": [64, 256, 1024],
}
BATCH = {"StyleLoss": 4, "NCCLoss": 8}
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
VGG_SHAPES = [(64, 1), (128, 2), (256, 4), (512, 8)]  # channels, downsampling of those layers
SCNN_CHANNELS, SCNN_DEPTH = 1024, 6
MMD_FEATURES, MMDPP_FEATURES = 1024, 512


def describe(name: str) -> str:
    return {"PatchMMDLoss": f"F{MMD_FEATURES}", "MMDPlusPlus": f"F{MMDPP_FEATURES}",
            "SCNNLoss": f"C{SCNN_CHANNELS}·D{SCNN_DEPTH}", "PerceptualLoss": "VGG16 l2+gram",
            "StyleLoss": "4 Gram layers", "NCCLoss": "RGB"}[name]


def composition_peak_mib(name: str, batch: int, side: int) -> float:
    """The composition's estimated peak: the [N, F, H, W] (resp. [N, C, H, W]) maps it keeps."""
    if name == "PatchMMDLoss":
        return 6 * batch * MMD_FEATURES * side * side * 4 / 2**20
    if name == "MMDPlusPlus":
        return 6 * batch * MMDPP_FEATURES * side * side * 4 / 2**20
    if name == "SCNNLoss":
        return 11 * batch * SCNN_CHANNELS * side * side * 4 / 2**20
    return 0.0  # VGG, Gram and NCC compositions stay far below the limit at these sizes


# compositions -------------------------------------------------------------------------------

def rff_pooled(x, weight, bias, window=32, stride=16):
    pad = weight.shape[2] // 2
    return F.avg_pool2d(torch.cos(F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), weight, bias)), window, stride)


def patch_mmd_composition(features: int, channel_mean: bool, sigma: float = 0.06, patch: int = 3):
    def loss(x, y):
        weight = torch.randn(features, x.shape[1], patch, patch, device=x.device) / (sigma * patch ** 2)
        if channel_mean:
            weight = weight - weight.mean(dim=(2, 3), keepdim=True)
        bias = torch.rand(features, device=x.device) * (2 * math.pi)
        a, b = x * 2 - 1, y * 2 - 1
        return a, b, (rff_pooled(a, weight, bias) - rff_pooled(b, weight, bias)).square().mean(dim=(1, 2, 3))

    return loss


def mmd_composition():
    mmd = patch_mmd_composition(MMD_FEATURES, False)
    return lambda x, y: mmd(x, y)[2].mean()


def mmdpp_composition(patch: int = 3, local_sigma: float = 0.1):
    mmd = patch_mmd_composition(MMDPP_FEATURES, True)

    def loss(x, y):
        a, b, term = mmd(x, y)
        diff = F.pad((a - b).square().sum(dim=1, keepdim=True), [patch // 2] * 4, mode="reflect")
        dist = F.avg_pool2d(diff, patch, stride=1) * patch ** 2
        s = local_sigma * patch ** 2
        local = (1 - torch.exp(-dist / (2 * s * s))).mean(dim=(1, 2, 3))
        return (term + 0.05 * local + 0.001 * (a - b).square().mean(dim=(1, 2, 3))).mean()

    return loss


def plain_vgg(ours: PerceptualLoss) -> nn.Sequential:
    """VGG16's convolutional part up to relu4_3 as a plain nn.Sequential with ``ours``'s weights."""
    layers = []
    for module in ours.vgg.features[:23]:
        if isinstance(module, (nn.ReLU, nn.MaxPool2d)):
            layers.append(module)
        else:
            conv = nn.Conv2d(module.weight.shape[1], module.weight.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = module.weight, module.bias
            layers.append(conv)
    return nn.Sequential(*layers).requires_grad_(False)


def plain_gram(f):
    flat = f.flatten(2)
    return torch.bmm(flat, flat.mT) / (flat.shape[1] * flat.shape[2])


def perceptual_composition(ours: PerceptualLoss):
    net, mean, std = plain_vgg(ours), ours.vgg.mean, ours.vgg.std
    taps = {3, 8, 15, 22}  # relu1_2, relu2_2, relu3_3, relu4_3

    def features(x):
        h, out = (x - mean) / std, []
        for i, layer in enumerate(net):
            h = layer(h)
            if i in taps:
                out.append(h)
        return out

    def loss(x, y):
        total = 0
        for a, b in zip(features(x), features(y)):
            total = total + (a - b).square().flatten(1).mean(dim=1)
            total = total + (plain_gram(a) - plain_gram(b)).square().sum(dim=(1, 2))
        return total.mean()

    return loss


def ncc_composition(x, y):
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    yc = y - y.mean(dim=(2, 3), keepdim=True)
    r = (xc * yc).sum(dim=(1, 2, 3)) / (xc.square().sum(dim=(1, 2, 3)) * yc.square().sum(dim=(1, 2, 3))).sqrt()
    return (1 - r).mean()


# workloads ----------------------------------------------------------------------------------

def _pair(batch, side, device, gen):
    x = torch.rand(batch, 3, side, side, generator=gen).to(device).requires_grad_(True)
    y = torch.rand(batch, 3, side, side, generator=gen).to(device)
    return x, y


def _style_workload(impl, batch, side, device, gen):
    shapes = [(c, side // d) for c, d in VGG_SHAPES]
    style = [torch.rand(1, c, s, s, generator=gen).to(device) for c, s in shapes]
    feats = [torch.rand(batch, c, s, s, generator=gen).to(device).requires_grad_(True) for c, s in shapes]
    if impl == "ours":
        fn = StyleLoss(style).to(device)
    else:
        targets = [plain_gram(s) for s in style]  # kept, as StyleLoss keeps its buffers
        fn = lambda fs: sum((plain_gram(f) - g).square().sum(dim=(1, 2)) for f, g in zip(fs, targets)).mean()  # noqa

    def run():
        fn(feats).backward()
        sync(device)
        for f in feats:
            f.grad = None

    return run


def workload(impl: str, loss: str, batch: int, side: int, device: str = "cpu"):
    """Inputs and loss built once; the returned callable runs ``loss(input, target).backward()``."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if loss == "StyleLoss":
        return _style_workload(impl, batch, side, device, gen)
    x, y = _pair(batch, side, device, gen)
    if loss == "PatchMMDLoss":
        fn = PatchMMDLoss(num_features=MMD_FEATURES) if impl == "ours" else mmd_composition()
    elif loss == "MMDPlusPlus":
        fn = MMDPlusPlus(num_features=MMDPP_FEATURES) if impl == "ours" else mmdpp_composition()
    elif loss == "SCNNLoss":
        ours = SCNNLoss(channels=SCNN_CHANNELS, depth=SCNN_DEPTH).to(device)
        if impl == "ours":
            fn = ours
        else:
            net = composition_of(ours.scnn).to(device)
            fn = lambda a, b: F.mse_loss(net(2 * a - 1), net(2 * b - 1))  # noqa: E731
    elif loss == "PerceptualLoss":
        ours = PerceptualLoss(layers=VGG_LAYERS, feature="both").to(device)
        fn = ours if impl == "ours" else perceptual_composition(ours)
    elif loss == "NCCLoss":
        fn = NCCLoss() if impl == "ours" else ncc_composition
    else:
        raise ValueError(f"unknown loss {loss!r}")

    def run():
        fn(x, y).backward()
        sync(device)
        x.grad = None  # released inside the run, so the memory probe sees it as peak growth

    return run


CASES = [(name, side) for name in LOSSES for side in SIDES[name]]


@pytest.mark.parametrize("impl", ["ours", "composition"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}px")
def test_loss_fwd_bwd(benchmark, impl, case, device):
    name, side = case
    batch = BATCH.get(name, 1)
    group = f"{name} fwd+bwd {device} {describe(name)} {batch}x{side}²"
    axis = ("image side", side)
    if impl == "composition":
        skip_over_memory(group, impl, composition_peak_mib(name, batch, side), device=device, op=name, axis=axis)
    record(benchmark, group, impl, workload, op=name, axis=axis, loss=name, batch=batch, side=side, device=device)
