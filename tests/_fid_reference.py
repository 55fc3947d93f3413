"""pytorch-fid's FID Inception v3, written plainly from its published description for the tests:
the list of its conv layers (torchvision's ``Inception3`` names and shapes, 1008 classes, no aux
classifier), a random state dict in the key format of ``pt_inception-2015-12-05-6726825d.pth``,
and a functional forward pass that reads the weights straight from that dict."""
import torch
import torch.nn.functional as F


def _a(name, cin, pool):
    return [(f"{name}.branch1x1", cin, 64, 1, 1), (f"{name}.branch5x5_1", cin, 48, 1, 1),
            (f"{name}.branch5x5_2", 48, 64, 5, 5), (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{name}.branch3x3dbl_2", 64, 96, 3, 3), (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
            (f"{name}.branch_pool", cin, pool, 1, 1)]


def _b(name, cin):
    return [(f"{name}.branch3x3", cin, 384, 3, 3), (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{name}.branch3x3dbl_2", 64, 96, 3, 3), (f"{name}.branch3x3dbl_3", 96, 96, 3, 3)]


def _c(name, cin, c7):
    return [(f"{name}.branch1x1", cin, 192, 1, 1), (f"{name}.branch7x7_1", cin, c7, 1, 1),
            (f"{name}.branch7x7_2", c7, c7, 1, 7), (f"{name}.branch7x7_3", c7, 192, 7, 1),
            (f"{name}.branch7x7dbl_1", cin, c7, 1, 1), (f"{name}.branch7x7dbl_2", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_3", c7, c7, 1, 7), (f"{name}.branch7x7dbl_4", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_5", c7, 192, 1, 7), (f"{name}.branch_pool", cin, 192, 1, 1)]


def _d(name, cin):
    return [(f"{name}.branch3x3_1", cin, 192, 1, 1), (f"{name}.branch3x3_2", 192, 320, 3, 3),
            (f"{name}.branch7x7x3_1", cin, 192, 1, 1), (f"{name}.branch7x7x3_2", 192, 192, 1, 7),
            (f"{name}.branch7x7x3_3", 192, 192, 7, 1), (f"{name}.branch7x7x3_4", 192, 192, 3, 3)]


def _e(name, cin):
    return [(f"{name}.branch1x1", cin, 320, 1, 1), (f"{name}.branch3x3_1", cin, 384, 1, 1),
            (f"{name}.branch3x3_2a", 384, 384, 1, 3), (f"{name}.branch3x3_2b", 384, 384, 3, 1),
            (f"{name}.branch3x3dbl_1", cin, 448, 1, 1), (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
            (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
            (f"{name}.branch_pool", cin, 192, 1, 1)]


CONVS = ([("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
          ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]
         + _a("Mixed_5b", 192, 32) + _a("Mixed_5c", 256, 64) + _a("Mixed_5d", 288, 64) + _b("Mixed_6a", 288)
         + _c("Mixed_6b", 768, 128) + _c("Mixed_6c", 768, 160) + _c("Mixed_6d", 768, 160) + _c("Mixed_6e", 768, 192)
         + _d("Mixed_7a", 768) + _e("Mixed_7b", 1280) + _e("Mixed_7c", 2048))


def random_state_dict(seed=0, num_batches_tracked=True, fc=True):
    """Random weights under pytorch-fid's keys; He-scaled so activations stay O(1) through the net."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, cin, cout, kh, kw in CONVS:
        fan_in = cin * kh * kw
        state[f"{name}.conv.weight"] = torch.randn(cout, cin, kh, kw, generator=g) * (2.0 / fan_in) ** 0.5
        state[f"{name}.bn.weight"] = 1.0 + 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_var"] = 0.5 + torch.rand(cout, generator=g)
        if num_batches_tracked:
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    if fc:
        state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.01
        state["fc.bias"] = torch.zeros(1008)
    return state


_GEOMETRY = {}  # name -> (stride, padding) where not (1, "same")
for _n in ("Conv2d_1a_3x3", "Mixed_6a.branch3x3", "Mixed_6a.branch3x3dbl_3", "Mixed_7a.branch3x3_2",
           "Mixed_7a.branch7x7x3_4"):
    _GEOMETRY[_n] = (2, (0, 0))
_GEOMETRY["Conv2d_2a_3x3"] = (1, (0, 0))
_GEOMETRY["Conv2d_4a_3x3"] = (1, (0, 0))


def _conv(state, name, x):
    w = state[f"{name}.conv.weight"].to(x.dtype)
    stride, padding = _GEOMETRY.get(name, (1, (w.shape[2] // 2, w.shape[3] // 2)))
    y = F.conv2d(x, w, stride=stride, padding=padding)
    mean, var = state[f"{name}.bn.running_mean"].to(x.dtype), state[f"{name}.bn.running_var"].to(x.dtype)
    scale, shift = state[f"{name}.bn.weight"].to(x.dtype), state[f"{name}.bn.bias"].to(x.dtype)
    y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-3) * scale[:, None, None] + shift[:, None, None]
    return y.clamp_min(0)


def _avg_no_pad(x):
    ones = torch.ones_like(x[:, :1])
    return F.avg_pool2d(x, 3, 1, 1, divisor_override=1) / F.avg_pool2d(ones, 3, 1, 1, divisor_override=1)


def reference_features(state, x01):
    """pytorch-fid's ``InceptionV3([3])`` forward on images already 299x299 (or any size >= 75) in [0, 1]."""
    c = lambda name, t: _conv(state, name, t)  # noqa: E731
    x = 2 * x01 - 1
    x = c("Conv2d_2b_3x3", c("Conv2d_2a_3x3", c("Conv2d_1a_3x3", x)))
    x = F.max_pool2d(x, 3, 2)
    x = F.max_pool2d(c("Conv2d_4a_3x3", c("Conv2d_3b_1x1", x)), 3, 2)
    for m in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = torch.cat([c(f"{m}.branch1x1", x), c(f"{m}.branch5x5_2", c(f"{m}.branch5x5_1", x)),
                       c(f"{m}.branch3x3dbl_3", c(f"{m}.branch3x3dbl_2", c(f"{m}.branch3x3dbl_1", x))),
                       c(f"{m}.branch_pool", _avg_no_pad(x))], 1)
    m = "Mixed_6a"
    x = torch.cat([c(f"{m}.branch3x3", x),
                   c(f"{m}.branch3x3dbl_3", c(f"{m}.branch3x3dbl_2", c(f"{m}.branch3x3dbl_1", x))),
                   F.max_pool2d(x, 3, 2)], 1)
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        a = c(f"{m}.branch7x7_3", c(f"{m}.branch7x7_2", c(f"{m}.branch7x7_1", x)))
        b = x
        for i in range(1, 6):
            b = c(f"{m}.branch7x7dbl_{i}", b)
        x = torch.cat([c(f"{m}.branch1x1", x), a, b, c(f"{m}.branch_pool", _avg_no_pad(x))], 1)
    m = "Mixed_7a"
    b = x
    for i in range(1, 5):
        b = c(f"{m}.branch7x7x3_{i}", b)
    x = torch.cat([c(f"{m}.branch3x3_2", c(f"{m}.branch3x3_1", x)), b, F.max_pool2d(x, 3, 2)], 1)
    for m, pool in (("Mixed_7b", _avg_no_pad), ("Mixed_7c", lambda t: F.max_pool2d(t, 3, 1, 1))):
        a = c(f"{m}.branch3x3_1", x)
        b = c(f"{m}.branch3x3dbl_2", c(f"{m}.branch3x3dbl_1", x))
        x = torch.cat([c(f"{m}.branch1x1", x), c(f"{m}.branch3x3_2a", a), c(f"{m}.branch3x3_2b", a),
                       c(f"{m}.branch3x3dbl_3a", b), c(f"{m}.branch3x3dbl_3b", b), c(f"{m}.branch_pool", pool(x))], 1)
    return x.mean(dim=(2, 3))
