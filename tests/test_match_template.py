"""match_template: parity with a float64 reference and OpenCV, gradients, opcheck, flat windows,
masks, layouts, errors; find_peaks; NCCLoss."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perceptual_ext.data import sample_image
from perceptual_ext.losses import NCCLoss, ncc_loss
from perceptual_ext.ops import METHODS, find_peaks, match_template, release_fft_workspace

CV2_METHODS = {"corr": cv2.TM_CCORR, "zero_mean_corr": cv2.TM_CCOEFF, "ssd": cv2.TM_SQDIFF,
               "ncc": cv2.TM_CCOEFF_NORMED, "ssd_normed": cv2.TM_SQDIFF_NORMED, "corr_normed": cv2.TM_CCORR_NORMED}
NORMED = ("ncc", "ssd_normed", "corr_normed")
MINIMIZED = ("ssd", "ssd_normed")


def windows(image, h, w):
    """Every valid window, float64: [N, C, h*w, L]."""
    n, c = image.shape[:2]
    return F.unfold(image.double(), (h, w)).view(n, c, h * w, -1)


def reference(image, templ, method, flat_tol=1e-12):
    """Plain float64 composition of each method's definition, with the documented flat rule."""
    n, _, hh, ww = image.shape
    k, c, h, w = templ.shape
    f = windows(image, h, w)[:, None]                      # [N, 1, C, m, L]
    g = templ.double().reshape(1, k, c, h * w, 1)          # [1, K, C, m, 1]
    if method in ("zero_mean_corr", "ncc"):
        g = g - g.mean(3, keepdim=True)
    cross = (g * f).sum((2, 3))                            # [N, K, L]
    f_energy = f.square().sum((2, 3))
    g_energy = templ.double().reshape(1, k, -1, 1).square().sum(2)
    if method in ("corr", "zero_mean_corr"):
        out = cross
    elif method == "ssd":
        out = ((g - f) ** 2).sum((2, 3))
    elif method == "ncc":
        fc = f - f.mean(3, keepdim=True)
        f_var, g_var = fc.square().sum((2, 3)), g.square().sum((2, 3))
        flat_f, flat_g = f_var <= flat_tol * f_energy, g_var <= flat_tol * g_energy
        out = (cross / (f_var * g_var).sqrt()).clamp(-1, 1)
        out = torch.where(flat_f | flat_g, (flat_f & flat_g).double(), out)
    else:
        flat_f, flat_g = f_energy <= flat_tol * g_energy.clamp_min(1), g_energy <= 0
        if method == "corr_normed":
            out = (cross / (f_energy * g_energy).sqrt()).clamp(-1, 1)
            out = torch.where(flat_f | flat_g, (flat_f & flat_g).double(), out)
        else:
            out = ((g - f) ** 2).sum((2, 3)) / (f_energy * g_energy).sqrt()
            out = torch.where(flat_f | flat_g, 1.0 - (flat_f & flat_g).double(), out)
    return out.view(n, k, hh - h + 1, ww - w + 1)


def assert_grads_match_reference(image, templ, method, weight):
    """The op's gradients of <scores, weight> w.r.t. image and templ equal the reference's autograd."""
    (match_template(image, templ, method) * weight).sum().backward()
    ours = image.grad.clone(), templ.grad.clone()
    image.grad = templ.grad = None
    (reference(image, templ, method) * weight).sum().backward()
    for got, expected in zip(ours, (image.grad, templ.grad)):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def scale_of(ref, method):
    return 1.0 if method in NORMED else max(1.0, ref.abs().max().item())


# (image shape, templ shape): small templates take the direct kernel, the last two the FFT path.
CASES = [((1, 1, 20, 23), (1, 1, 5, 4)), ((2, 3, 17, 30), (4, 3, 6, 9)), ((3, 2, 33, 19), (5, 2, 3, 3)),
         ((1, 1, 9, 9), (1, 1, 9, 9)), ((1, 1, 128, 128), (1, 1, 96, 96)), ((2, 2, 100, 90), (3, 2, 80, 70))]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("image_shape,templ_shape", CASES)
def test_matches_float64_reference(device, method, image_shape, templ_shape):
    image = torch.rand(image_shape, dtype=torch.float64, device=device)
    templ = torch.rand(templ_shape, dtype=torch.float64, device=device)
    out = match_template(image, templ, method)
    ref = reference(image.cpu(), templ.cpu(), method)
    assert out.shape == ref.shape and out.dtype == torch.float64
    assert (out.cpu() - ref).abs().max() <= 1e-6 * scale_of(ref, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("side,templ_side", [(96, 30), (160, 120)])  # direct kernel, FFT path
def test_float32_close_to_float64_reference_on_low_contrast(device, method, side, templ_side):
    # Windows of std ~0.02 on a bright background: the cancelling statistics must stay exact.
    image = 0.7 + 0.02 * torch.randn(2, 1, side, side, device=device)
    templ = image[:1, :, 10:10 + templ_side, 20:20 + templ_side].clone()
    out = match_template(image, templ, method)
    ref = reference(image.cpu(), templ.cpu(), method)
    assert out.dtype == torch.float32
    assert (out.cpu().double() - ref).abs().max() <= 1e-4 * scale_of(ref, method)


def real_images():
    yield "random", torch.rand(1, 1, 120, 140)
    # Crops with texture and flat regions (sky, background, saturated paper).
    for name, (top, left) in (("camera", (200, 150)), ("coins", (20, 100)), ("text", (20, 100))):
        img = sample_image(name, channels=1)
        yield name, img[:, top:top + 120, left:left + 140][None].contiguous()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("templ_size", [7, 24, 48])
def test_opencv_parity(method, templ_size):
    for name, image in real_images():
        templ = image[:, :, 30:30 + templ_size, 40:40 + templ_size].clone()
        templ += 0.01 * torch.randn_like(templ)
        ours = match_template(image, templ, method)[0, 0].double()
        theirs = torch.from_numpy(cv2.matchTemplate(image[0, 0].numpy(), templ[0, 0].numpy(),
                                                    CV2_METHODS[method])).double()
        ref = reference(image, templ, method)[0, 0]
        tol = 1e-4 * scale_of(ref, method)
        # Ours is held to the float64 reference everywhere (flat windows included) ...
        assert (ours - ref).abs().max() <= tol, f"{name}: {method} vs float64"
        # ... and to OpenCV away from flat windows, where OpenCV's float32 arithmetic is itself
        # within the tolerance of the reference (most windows; it errs on low-contrast ones).
        theirs_cmp = theirs
        ours_cmp = ours.clamp(max=1.0) if method == "ssd_normed" else ours  # OpenCV clamps to 1
        ref_cmp = ref.clamp(max=1.0) if method == "ssd_normed" else ref
        window_std = windows(image, templ_size, templ_size)[0, 0].std(0).view_as(ours)
        valid = (window_std > 0.05) & ((theirs_cmp - ref_cmp).abs() <= tol)
        assert valid.sum() >= 500, f"{name}: too few windows where OpenCV is accurate to compare"
        assert (ours_cmp - theirs_cmp)[valid].abs().max() <= tol, f"{name}: {method} vs OpenCV"
        # Same best match (up to exact ties, e.g. saturated text for corr).
        pick = torch.argmin if method in MINIMIZED else torch.argmax
        best_ours, best_theirs = pick(ours), pick(theirs)
        assert best_ours == best_theirs or (ours.flatten()[best_ours] - ours.flatten()[best_theirs]).abs() <= tol, \
            f"{name}: {method} best match differs from OpenCV"


def test_flat_window_rule(device):
    image = torch.zeros(1, 1, 12, 12, device=device)
    image[..., :, 6:] = torch.rand(12, 6, device=device)     # right half textured, left half flat 0
    flat_templ = torch.full((1, 1, 4, 4), 0.5, device=device)
    textured_templ = torch.rand(1, 1, 4, 4, device=device)
    flat_cols, textured_cols = slice(0, 3), slice(6, 9)
    ncc_flat = match_template(image, flat_templ, "ncc")[0, 0]
    assert torch.all(ncc_flat[:, flat_cols] == 1) and torch.all(ncc_flat[:, textured_cols] == 0)
    ncc_textured = match_template(image, textured_templ, "ncc")[0, 0]
    assert torch.all(ncc_textured[:, flat_cols] == 0)
    # Zero-energy windows for the energy-normalized methods.
    assert torch.all(match_template(image, textured_templ, "corr_normed")[0, 0][:, flat_cols] == 0)
    flat_templ = torch.zeros(1, 1, 4, 4, device=device)
    assert torch.all(match_template(image, flat_templ, "corr_normed")[0, 0][:, flat_cols] == 1)
    assert torch.all(match_template(image, textured_templ, "ssd_normed")[0, 0][:, flat_cols] == 1)
    for method in METHODS:
        for templ in (flat_templ, textured_templ, torch.zeros_like(flat_templ)):
            assert torch.isfinite(match_template(image, templ, method)).all()


def test_normed_scores_are_clamped(device):
    image = torch.rand(1, 1, 30, 30, dtype=torch.float64, device=device)
    for method in ("ncc", "corr_normed"):
        out = match_template(image, image[:, :, 3:13, 5:15], method)
        assert out.abs().max() <= 1 and out[0, 0, 3, 5] == pytest.approx(1.0, abs=1e-12)
    # ssd_normed is not clamped above: a bright template over a dark window exceeds 1.
    dark = torch.full((1, 1, 8, 8), 0.01, dtype=torch.float64, device=device)
    dark[..., 0, 0] = 0.02
    assert match_template(dark, torch.ones(1, 1, 4, 4, dtype=torch.float64, device=device), "ssd_normed").min() > 1


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(device, method):
    image = torch.rand(2, 2, 6, 7, dtype=torch.float64, device=device, requires_grad=True)
    templ = torch.rand(2, 2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: match_template(a, b, method), (image, templ), fast_mode=True)


@pytest.mark.parametrize("method", METHODS)
def test_backward_rows_wider_than_a_block(device, method):
    # 296 windows per output row and 3 templates: the template gradient is summed row by row
    # (on a GPU, by one block per row over more windows than it has threads).
    image = torch.rand(2, 2, 9, 300, dtype=torch.float64, device=device, requires_grad=True)
    templ = torch.rand(3, 2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    weight = torch.randn(2, 3, 6, 296, dtype=torch.float64, device=device)
    assert_grads_match_reference(image, templ, method, weight)


@pytest.mark.parametrize("method", METHODS)
def test_backward_fft_path_matches_reference_autograd(method):
    image = torch.rand(1, 2, 60, 64, dtype=torch.float64, requires_grad=True)
    templ = torch.rand(2, 2, 48, 50, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 2, 13, 15, dtype=torch.float64)
    assert_grads_match_reference(image, templ, method, weight)


@pytest.mark.parametrize("method", ["ncc", "ssd", "corr_normed"])
def test_masked_matches_opencv_and_gradcheck(method):
    image = torch.rand(40, 50)
    templ = image[5:15, 7:19] + 0.1 * torch.rand(10, 12)
    mask = torch.rand(10, 12)
    ours = match_template(image, templ, method, mask=mask)
    theirs = cv2.matchTemplate(image.numpy(), templ.numpy(), CV2_METHODS[method], mask=mask.numpy())
    scale = 1.0 if method in NORMED else float(np.abs(theirs).max())
    assert np.abs(ours.numpy() - theirs).max() <= 1e-4 * scale
    # A mask of ones is the unmasked op.
    torch.testing.assert_close(match_template(image, templ, method, mask=torch.ones(10, 12)),
                               match_template(image, templ, method), rtol=1e-5, atol=1e-4 * scale)
    args = [t.double().requires_grad_() for t in (image[:9, :10], templ[:4, :5], mask[:4, :5])]
    assert torch.autograd.gradcheck(lambda a, b, m: match_template(a, b, method, mask=m), args, fast_mode=True)


def test_masked_all_methods_match_opencv():
    image = torch.rand(30, 34)
    templ = image[4:12, 6:15] + 0.05 * torch.rand(8, 9)
    mask = (torch.rand(8, 9) > 0.3).to(torch.uint8)
    for method, code in CV2_METHODS.items():
        ours = match_template(image, templ, method, mask=mask).numpy()
        theirs = cv2.matchTemplate(image.numpy(), templ.numpy(), code, mask=mask.numpy())
        scale = 1.0 if method in NORMED else float(np.abs(theirs).max())
        assert np.abs(ours - theirs).max() <= 1e-4 * scale, method


def test_opcheck(device):
    for image_shape, templ_shape in [((2, 3, 9, 10), (2, 3, 4, 3)), ((1, 1, 40, 40), (1, 1, 33, 35)),
                                      ((0, 1, 5, 5), (2, 1, 2, 2))]:
        image = torch.rand(image_shape, dtype=torch.float64, device=device, requires_grad=True)
        templ = torch.rand(templ_shape, dtype=torch.float64, device=device, requires_grad=True)
        for method in ("ncc", "ssd"):
            torch.library.opcheck(torch.ops.perceptual_ext.match_template.default, (image, templ, method))
        grad = torch.randn(image_shape[0], templ_shape[0], image_shape[2] - templ_shape[2] + 1,
                           image_shape[3] - templ_shape[3] + 1, dtype=torch.float64, device=device)
        torch.library.opcheck(torch.ops.perceptual_ext.match_template_backward.default,
                              (grad, image.detach(), templ.detach(), "ncc"))


def test_fft_workspace_reuse_across_shapes():
    """The CPU FFT path keeps its buffers between calls: a call after calls of other shapes (a
    smaller template in the same padded buffer, more channels/templates, another image size)
    gives what a call with fresh buffers gives, and the buffers can be released."""
    generator = torch.Generator().manual_seed(3)
    cases = [(torch.rand(1, 1, 96, 100, generator=generator), torch.rand(1, 1, 40, 44, generator=generator)),
             (torch.rand(1, 1, 96, 100, generator=generator), torch.rand(1, 1, 33, 30, generator=generator)),
             (torch.rand(2, 3, 96, 100, generator=generator), torch.rand(4, 3, 40, 44, generator=generator)),
             (torch.rand(1, 1, 70, 81, generator=generator), torch.rand(1, 1, 40, 44, generator=generator))]
    fresh = []
    for image, templ in cases:
        release_fft_workspace()
        fresh.append(match_template(image, templ, "ncc"))
    for order in (cases, cases[::-1], cases + cases):
        for image, templ in order:
            expected = fresh[next(i for i, c in enumerate(cases) if c[0] is image and c[1] is templ)]
            assert torch.equal(match_template(image, templ, "ncc"), expected)
    for (image, templ), expected in zip(cases, fresh):  # and against the float64 definition
        torch.testing.assert_close(match_template(image, templ, "ncc").double(), reference(image, templ, "ncc"),
                                   rtol=0, atol=1e-4)
    release_fft_workspace()
    release_fft_workspace()  # idempotent


def test_fft_path_in_template_chunks(device):
    """Images large enough that the FFT path transforms the products back one template at a time."""
    image = torch.rand(2, 1, 260, 260, dtype=torch.float64, device=device)  # 2 x 260² > 2^17 elements
    templ = torch.rand(3, 1, 230, 230, dtype=torch.float64, device=device)
    expected = F.conv2d(image, templ)
    torch.testing.assert_close(match_template(image, templ, "corr"), expected, rtol=1e-10, atol=1e-8)


def test_layouts_and_non_contiguous(device):
    base = torch.rand(2, 3, 30, 26, dtype=torch.float64, device=device)
    templ = torch.rand(2, 3, 5, 4, dtype=torch.float64, device=device)
    expected = match_template(base, templ, "ncc")
    for image in (base.to(memory_format=torch.channels_last), base.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(match_template(image, templ.transpose(2, 3).contiguous().transpose(2, 3), "ncc"),
                                   expected, rtol=0, atol=1e-12)
    sliced = base[:, :, ::2, 1:]
    assert not sliced.is_contiguous()
    torch.testing.assert_close(match_template(sliced, templ, "ssd"),
                               reference(sliced.cpu(), templ.cpu(), "ssd").to(device))
    # Convenience ranks: [H, W] x [h, w] -> [Ho, Wo]; [C, H, W] x [C, h, w] -> [Ho, Wo]; x [K, C, h, w] -> [K, Ho, Wo].
    assert match_template(base[0, 0], templ[0, 0]).shape == (26, 23)
    assert match_template(base[0], templ[0]).shape == (26, 23)
    assert match_template(base[0], templ).shape == (2, 26, 23)
    torch.testing.assert_close(match_template(base[0, 0], templ[0, 0]),
                               match_template(base[:1, :1], templ[:1, :1])[0, 0])


def test_empty_and_degenerate(device):
    empty_batch = match_template(torch.rand(0, 1, 8, 8, device=device), torch.rand(3, 1, 2, 2, device=device))
    no_templates = match_template(torch.rand(2, 1, 8, 8, device=device), torch.rand(0, 1, 2, 2, device=device))
    assert empty_batch.shape == (0, 3, 7, 7) and no_templates.shape == (2, 0, 7, 7)
    image = torch.rand(2, 1, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
    templ = torch.rand(0, 1, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    match_template(image, templ).sum().backward()
    assert torch.equal(image.grad, torch.zeros_like(image))


@pytest.mark.parametrize("image,templ,kwargs,exc,match", [
    (torch.rand(1, 1, 5, 5), torch.rand(1, 1, 6, 3), {}, ValueError, "templ must not be larger than image"),
    (torch.rand(1, 3, 9, 9), torch.rand(1, 1, 3, 3), {}, ValueError, "same number of channels"),
    (torch.rand(5), torch.rand(2, 2), {}, ValueError, "image must be"),
    (torch.rand(1, 1, 1, 5, 5), torch.rand(2, 2), {}, ValueError, "image must be"),
    (torch.rand(5, 5), torch.rand(1, 1, 1, 2, 2), {}, ValueError, "templ must be"),
    (torch.ones(5, 5, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64), {}, TypeError,
     "image must be a real floating"),
    (torch.rand(5, 5), torch.rand(2, 2, dtype=torch.float64), {}, TypeError, "same dtype"),
    (torch.rand(5, 5), torch.rand(2, 2), {"method": "sqdiff"}, ValueError, "method must be one of"),
    (torch.rand(5, 5), torch.rand(2, 2), {"mask": torch.rand(3, 3)}, ValueError, "mask must be"),
    (torch.rand(5, 5), torch.rand(0, 2), {}, ValueError, "non-empty spatial size"),
    ("image", torch.rand(2, 2), {}, TypeError, "image must be a torch.Tensor"),
])
def test_bad_input(image, templ, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        match_template(image, templ, **kwargs)


def test_kernel_errors_name_argument():
    with pytest.raises(RuntimeError, match="templ must not be larger than image"):
        torch.ops.perceptual_ext.match_template(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 5, 5), "ncc")
    with pytest.raises(RuntimeError, match="method must be one of"):
        torch.ops.perceptual_ext.match_template(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 2, 2), "nope")


def test_torch_compile():
    @torch.compile(backend="aot_eager", fullgraph=True)
    def best_score(image, templ):
        return match_template(image, templ, "ncc").amax()

    image = torch.rand(1, 1, 20, 20, requires_grad=True)
    templ = torch.rand(1, 1, 5, 5)
    best_score(image, templ).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


# ---- find_peaks -------------------------------------------------------------------------

def test_find_peaks_non_maximum_suppression():
    score = torch.zeros(2, 20, 20)
    score[0, 5, 5], score[0, 6, 6], score[0, 15, 3] = 1.0, 0.9, 0.8
    score[1, 10, 10] = -1.0
    locations, values = find_peaks(score, k=2, min_distance=3)
    assert locations[0].tolist() == [[5, 5], [15, 3]]
    assert values[0].tolist() == pytest.approx([1.0, 0.8])
    assert find_peaks(score, k=2, min_distance=1)[0][0].tolist() == [[5, 5], [6, 6]]
    assert find_peaks(score[1], k=1, maximize=False)[0].tolist() == [[10, 10]]
    # Fewer peaks than asked: -1 and NaN.
    locations, values = find_peaks(torch.ones(3, 3), k=3, min_distance=3)
    assert locations.tolist() == [[0, 0], [-1, -1], [-1, -1]] and torch.isnan(values[1:]).all()


def test_find_peaks_finds_template_in_image():
    image = sample_image("coins", channels=1)[:, :150, :200]
    templ = image[:, 60:84, 90:114].clone()
    locations, values = find_peaks(match_template(image, templ), k=3, min_distance=24)
    assert locations[0].tolist() == [60, 90] and values[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="min_distance"):
        find_peaks(torch.rand(4, 4), min_distance=0)
    with pytest.raises(TypeError, match="score must be a real floating"):
        find_peaks(torch.ones(4, 4, dtype=torch.int64))


# ---- NCCLoss --------------------------------------------------------------------------------

def test_ncc_loss_matches_op_and_invariances(device):
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64, device=device, requires_grad=True)
    y = torch.rand(3, 2, 16, 16, dtype=torch.float64, device=device)
    per_sample = NCCLoss(reduction="none")(x, y)
    expected = torch.stack([1 - match_template(x[i:i + 1], y[i:i + 1], "ncc").flatten() for i in range(3)]).flatten()
    torch.testing.assert_close(per_sample, expected)
    torch.testing.assert_close(ncc_loss(x, y), expected.mean())
    torch.testing.assert_close(NCCLoss(reduction="sum")(x, y), expected.sum())
    assert NCCLoss()(x, 3 * x.detach() - 0.2).abs() < 1e-12
    assert NCCLoss()(x, y[:1]).shape == ()
    assert torch.autograd.gradcheck(lambda a: ncc_loss(a, y, "none"), (x,), fast_mode=True)
    flat = torch.full_like(x, 0.3)
    assert torch.equal(ncc_loss(flat, flat, "none"), torch.zeros(3, dtype=torch.float64, device=device))
    loss = ncc_loss(x, flat, "none")
    assert torch.equal(loss.detach(), torch.ones_like(loss))
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_ncc_loss_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        NCCLoss(reduction="avg")
    with pytest.raises(ValueError, match="target must have the shape of input"):
        ncc_loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9))
    with pytest.raises(ValueError, match="target batch"):
        ncc_loss(torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="input must be"):
        ncc_loss(torch.rand(8, 8), torch.rand(8, 8))


# --- NaN / inf / overflow (issue 19) and the FFT workspace's padded extent (issue 22) ----------

def _touching(shape, y, x, h, w):
    """[Ho, Wo] bool: the windows of an image of `shape` (H, W) that contain pixel (y, x)."""
    hh, ww = shape
    oy = torch.arange(hh - h + 1).view(-1, 1)
    ox = torch.arange(ww - w + 1).view(1, -1)
    return (oy <= y) & (y < oy + h) & (ox <= x) & (x < ox + w)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("h", [5, 40])  # direct kernel and FFT path
@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_pixel_gives_nan_exactly_where_it_touches(method, h, bad, device):
    image = torch.rand(2, 2, 64, 64, device=device)
    templ = torch.rand(3, 2, h, h, device=device)
    ref = match_template(image.double(), templ.double(), method)
    image[1, 1, 30, 20] = bad
    score = match_template(image, templ, method)
    touched = _touching((64, 64), 30, 20, h, h).to(device)
    assert score[1, :, touched].isnan().all()
    assert not score[1, :, ~touched].isnan().any() and not score[0].isnan().any()
    torch.testing.assert_close(score[1, :, ~touched].double(), ref[1, :, ~touched], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(score[0].double(), ref[0], atol=2e-4, rtol=1e-4)
    # The best ssd window is never the NaN one (it was a perfect 0 before).
    locations, _ = find_peaks(score[1, 0], k=3, maximize=method in ("corr", "zero_mean_corr", "ncc", "corr_normed"))
    for y, x in locations.tolist():
        assert not touched[y, x]


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_template_gives_nan_windows_and_masked_too(method, device):
    image = torch.rand(1, 1, 20, 20, device=device)
    templ = torch.rand(2, 1, 4, 4, device=device)
    templ[1, 0, 2, 1] = float("nan")
    score = match_template(image, templ, method)
    assert score[0, 1].isnan().all() and not score[0, 0].isnan().any()
    masked = match_template(image, templ, method, mask=torch.ones(4, 4, device=device))
    assert masked[0, 1].isnan().all() and not masked[0, 0].isnan().any()
    image[0, 0, 3, 3] = float("inf")
    masked = match_template(image, templ[:1], method, mask=torch.ones(4, 4, device=device))
    assert masked[0, 0, :4, :4].isnan().all()


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_backward_is_nan_on_touched_pixels(method, device):
    image = torch.rand(1, 1, 16, 16, dtype=torch.float64, device=device)
    image[0, 0, 8, 8] = float("nan")
    image.requires_grad_(True)
    templ = torch.rand(1, 1, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    score = match_template(image, templ, method)
    gi, gt = torch.autograd.grad(score.sum(), (image, templ))
    touched_pixels = torch.zeros(16, 16, dtype=torch.bool, device=device)
    touched_pixels[6:11, 6:11] = True
    assert gi[0, 0, touched_pixels].isnan().all() and not gi[0, 0, ~touched_pixels].isnan().any()
    assert gt.isnan().all()
    # Away from the NaN, the gradient is the one of the finite image there.
    clean = image.detach().clone()
    clean[0, 0, 8, 8] = 0.5
    clean.requires_grad_(True)
    grad_windows = torch.ones_like(score)
    grad_windows[0, 0, 6:9, 6:9] = 0  # the touched windows contribute nothing to the other pixels
    (gc,) = torch.autograd.grad((match_template(clean, templ.detach(), method) * grad_windows).sum(), clean)
    (gi0,) = torch.autograd.grad((match_template(image, templ.detach(), method) * grad_windows).sum(), image)
    torch.testing.assert_close(gi0[0, 0, ~touched_pixels], gc[0, 0, ~touched_pixels])


@pytest.mark.parametrize("method", METHODS)
def test_float32_overflow_is_inf_not_zero(method, device):
    image = torch.full((1, 1, 8, 8), 3e38, device=device)
    image[0, 0, ::2] = 2.9e38
    templ = torch.full((1, 1, 3, 3), -3e38, device=device)
    score = match_template(image, templ, method)
    ref = match_template(image.double(), templ.double(), method)  # exact in float64
    assert not score.isnan().any()
    if method == "ssd":
        assert (score == float("inf")).all()  # true value ~8e77
    expected = ref.float()  # rounds to +-inf beyond float32's range, as the score must
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-6)
    same = match_template(image, image[..., :3, :3].clone(), "ssd")
    assert same[0, 0, 0, 0] == 0  # equal huge values are still a perfect match, not inf
    grad_image = torch.autograd.grad(match_template(image.requires_grad_(True), templ, "ssd_normed").sum(), image)[0]
    assert torch.isfinite(grad_image).all()


def test_find_peaks_never_picks_nan_and_handles_empty_maps():
    score = torch.tensor([[0.1, float("nan")], [0.3, 0.2]])
    for maximize in (True, False):
        locations, values = find_peaks(score, k=4, maximize=maximize)
        assert [0, 1] not in locations.tolist()
        assert values[:3].isfinite().all() and values[3].isnan() and locations[3].tolist() == [-1, -1]
    for shape in [(0, 5), (5, 0), (3, 0, 0)]:
        locations, values = find_peaks(torch.zeros(shape), k=2)
        assert locations.shape == (*shape[:-2], 2, 2) and (locations == -1).all() and values.isnan().all()


def test_fft_workspace_extent_not_recorded_for_unkept_buffers():
    # A call over the workspace budget used to record its padded extent in the kept buffer's slot,
    # so the next kept call skipped the zeroing and correlated with an older, larger template's taps.
    release_fft_workspace()
    img, templ_a, templ_c = torch.rand(1, 1, 512, 512), torch.rand(1, 1, 100, 100), torch.rand(1, 1, 64, 64)
    ref = match_template(img.double(), templ_c.double(), "corr")
    match_template(img, templ_a, "corr")  # kept: a 100² template
    match_template(torch.rand(8, 1, 2048, 2048), torch.rand(1, 1, 64, 64), "corr")  # over the budget
    torch.testing.assert_close(match_template(img, templ_c, "corr").double(), ref, atol=5e-3, rtol=1e-5)
    if torch.cuda.is_available():  # CPU -> CUDA -> CPU: CUDA calls never keep buffers
        match_template(img, templ_a, "corr")
        match_template(img.cuda(), templ_c.cuda(), "corr")
        torch.testing.assert_close(match_template(img, templ_c, "corr").double(), ref, atol=5e-3, rtol=1e-5)
    release_fft_workspace()
