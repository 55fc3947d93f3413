"""optimize_image and the synthesis tasks built on it: every loss decreases, determinism, clamping,
lr decay, early stop, errors. Losses that live in other modules are skipped until they exist."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perceptual_ext.data import sample_image
from perceptual_ext.losses import GramLoss, PerceptualLoss, SCNNLoss
from perceptual_ext.train import gim_experiment, optimize_image, style_transfer, synthesize_texture
from perceptual_ext.train.gim import shifted_crops
from perceptual_ext.train.synthesis import make_loss

# loss name -> (module it needs, small keyword arguments that keep the test fast)
FACTORY_LOSSES = {
    "mse": (None, {}),
    "l1": (None, {}),
    "vgg": ("perceptual_ext.losses.perceptual", {}),
    "gram": ("perceptual_ext.losses.perceptual", {}),
    "scnn": ("perceptual_ext.losses.scnn", {"channels": 64, "depth": 2}),
    "mmd": ("perceptual_ext.losses.patch_mmd", {"num_features": 256}),
    "mmdpp": ("perceptual_ext.losses.patch_mmd", {}),
    "lpips": ("perceptual_ext.losses.lpips", {"lpips_net": "alex"}),
}


def _needs(module):
    """The loss module must be importable: a missing one fails the test."""
    if module is not None:
        importlib.import_module(module)


class RandomConvGram(nn.Module):
    """Gram loss on two random conv layers: the stand-in style loss that needs only the Gram op."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w1", torch.randn(16, 3, 3, 3, generator=g) / 3)
        self.register_buffer("w2", torch.randn(32, 16, 3, 3, generator=g) / 12)

    def features(self, x):
        f1 = torch.relu(nn.functional.conv2d(x, self.w1, padding=1))
        return [f1, torch.relu(nn.functional.conv2d(f1, self.w2, padding=1, stride=2))]

    def forward(self, input, target):
        return sum(GramLoss(t)(f) for f, t in zip(self.features(input), self.features(target)))


@pytest.fixture(scope="module")
def images():
    # start near the target: the regime of GIM and super-resolution, where every loss has a
    # useful gradient (patch MMD's narrow kernel has none between noise and a texture)
    target = sample_image("brick", channels=3, size=32)[None]
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return target, (target + 0.15 * noise).clamp(0, 1)


@pytest.mark.parametrize("name", list(FACTORY_LOSSES))
def test_optimize_image_decreases_each_loss(images, name):
    module, kwargs = FACTORY_LOSSES[name]
    _needs(module)
    target, start = images
    loss = make_loss(name, seed=0, **kwargs)
    image, history = optimize_image(lambda x: loss(x, target), start, steps=12, lr=0.03, progress=False, seed=0)
    assert len(history) == 12 and image.shape == start.shape
    assert history[-1] < 0.8 * history[0], f"{name}: {history[0]} -> {history[-1]}"
    assert 0 <= image.min() and image.max() <= 1


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.03), ("lbfgs", 1.0)])
def test_optimizers_decrease_gram_of_random_conv_features(images, optimizer, lr):
    target, start = images
    loss = RandomConvGram()
    image, history = optimize_image(lambda x: loss(x, target), start, steps=15, lr=lr, optimizer=optimizer,
                                    progress=False)
    assert history[-1] < 0.5 * history[0]
    assert loss(image, target).item() < 0.5 * history[0]


def test_lbfgs_reuses_the_line_search_evaluation(images):
    """Each L-BFGS step starts at the point its previous line search evaluated: that evaluation is
    reused, so fewer loss evaluations give the very same trajectory as torch's plain loop."""
    target, start = images
    loss = RandomConvGram()
    calls = [0]

    def counted(x):
        calls[0] += 1
        return loss(x, target)

    steps = 10
    image, history = optimize_image(counted, start, steps=steps, lr=1.0, optimizer="lbfgs", progress=False)

    plain = start.detach().clone().clamp_(0, 1).requires_grad_(True)
    opt = torch.optim.LBFGS([plain], lr=1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe")
    plain_calls, plain_history = [0], []

    def closure():
        opt.zero_grad(set_to_none=True)
        value = loss(plain, target)
        value.backward()
        plain_calls[0] += 1
        return value

    for _ in range(steps):
        plain_history.append(opt.step(closure).item())
    with torch.no_grad():
        plain.clamp_(0, 1)  # L-BFGS is clamped once, at the end
    assert history == plain_history
    assert torch.equal(image, plain.detach())
    assert calls[0] < plain_calls[0] and calls[0] <= plain_calls[0] - steps // 2, (calls[0], plain_calls[0])


def test_lbfgs_style_transfer_keeps_descending():
    """Clamping between L-BFGS iterations froze style transfer at the pixel bounds (the loss stayed
    at one value from step ~20 on); clamped once at the end, it keeps descending, in range."""
    content = sample_image("chelsea", channels=3, size=96)
    result = style_transfer(content, sample_image("rocket", channels=3), steps=40, progress=False)
    history = result.history
    assert history[39] < 0.9 * history[19], history[19::10]
    assert 0 <= result.image.min() and result.image.max() <= 1


def test_deterministic_with_seed_and_global_rng_restored(images):
    target, start = images

    def noisy(x):  # a loss with a random draw per call, like PatchMMDLoss with resample=True
        return (x - target + 0.05 * torch.randn_like(x)).square().mean()

    torch.manual_seed(123)
    first = optimize_image(noisy, start, steps=8, lr=0.05, progress=False, seed=7)
    after_first = torch.rand(1)
    torch.manual_seed(123)
    second = optimize_image(noisy, start, steps=8, lr=0.05, progress=False, seed=7)
    assert torch.equal(first.image, second.image) and first.history == second.history
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after_first), "optimize_image(seed=...) must not consume the caller's RNG"
    other = optimize_image(noisy, start, steps=8, lr=0.05, progress=False, seed=8)
    assert not torch.equal(first.image, other.image)


def test_clamp_init_untouched_and_no_clamp(images):
    _, start = images
    before = start.clone()
    image, _ = optimize_image(lambda x: -x.sum(), start, steps=40, lr=0.1, progress=False)
    assert torch.equal(start, before)
    assert image.max().item() == 1.0 and image.min().item() == 1.0
    unclamped, _ = optimize_image(lambda x: -x.sum(), start, steps=40, lr=0.1, progress=False, clamp=None)
    assert unclamped.min().item() > 1.0
    low, _ = optimize_image(lambda x: x.sum(), start, steps=40, lr=0.1, progress=False, clamp=(0.25, 0.5))
    assert low.max().item() == 0.25


def test_lr_decay_and_early_stop(images):
    target, start = images

    def loss(x):
        return (x - target).square().mean()

    one_step, _ = optimize_image(loss, start, steps=1, lr=0.05, progress=False)
    frozen, history = optimize_image(loss, start, steps=6, lr=0.05, progress=False,
                                     lr_decay=lambda t: 1.0 if t == 0 else 0.0)
    assert torch.equal(one_step, frozen) and len(history) == 6  # lr 0 after the first step
    decayed, _ = optimize_image(loss, start, steps=20, lr=0.05, progress=False, lr_decay=0.8)
    constant, _ = optimize_image(loss, start, steps=20, lr=0.05, progress=False)
    assert loss(decayed) > loss(constant)  # gamma=0.8 shrinks the steps
    cosine, history = optimize_image(loss, start, steps=20, lr=0.05, progress=False, lr_decay="cosine")
    assert history[-1] < history[0]
    seen = []
    _, history = optimize_image(loss, start, steps=50, lr=0.05, progress=False,
                                callback=lambda t, value, image: seen.append((t, value)) or t == 3)
    assert len(history) == 4 and [t for t, _ in seen] == [0, 1, 2, 3] and seen[2][1] == history[2]


def test_optimize_image_errors(images):
    _, start = images
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimize_image(lambda x: x.sum(), start, 2, 0.1, optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        optimize_image(lambda x: x.sum(), start, -1, 0.1, progress=False)
    with pytest.raises(ValueError, match="lr must be a positive"):
        optimize_image(lambda x: x.sum(), start, 2, 0.0, progress=False)
    with pytest.raises(ValueError, match="scalar tensor"):
        optimize_image(lambda x: x, start, 2, 0.1, progress=False)
    with pytest.raises(FloatingPointError, match="step 0"):
        optimize_image(lambda x: x.sum() * float("nan"), start, 2, 0.1, progress=False)
    with pytest.raises(ValueError, match="lr_decay as a float"):
        optimize_image(lambda x: x.sum(), start, 2, 0.1, progress=False, lr_decay=1.5)
    with pytest.raises(ValueError, match="clamp must be"):
        optimize_image(lambda x: x.sum(), start, 2, 0.1, progress=False, clamp=(1, 0))
    with pytest.raises(TypeError, match="init must be a real floating-point"):
        optimize_image(lambda x: x.sum(), torch.zeros(1, 3, 4, 4, dtype=torch.long), 2, 0.1, progress=False)
    assert optimize_image(lambda x: x.sum(), start, 0, 0.1, progress=False).history == []


def test_synthesize_texture_with_callable_and_named_losses():
    texture = sample_image("brick", channels=3)
    result = synthesize_texture(texture, loss=RandomConvGram(), size=32, steps=20, lr=0.02, progress=False)
    assert result.image.shape == (1, 3, 32, 32)
    assert result.history[-1] < 0.5 * result.history[0]
    again = synthesize_texture(texture, loss=RandomConvGram(), size=32, steps=20, lr=0.02, progress=False)
    assert torch.equal(result.image, again.image)
    small = synthesize_texture(sample_image("brick", channels=3, size=24), loss="mse", size=32, steps=5,
                               progress=False)
    assert small.image.shape == (1, 3, 32, 32)  # a texture smaller than size is upscaled
    with pytest.raises(ValueError, match="loss must be one of"):
        synthesize_texture(texture, loss="nope", size=32, steps=1, progress=False)


@pytest.mark.parametrize("name", ["gram", "scnn", "mmd"])
def test_synthesize_texture_factory_losses(name):
    module, kwargs = FACTORY_LOSSES[name]
    _needs(module)
    result = synthesize_texture(sample_image("gravel", channels=3), loss=name, size=32, steps=10, lr=0.03,
                                progress=False, loss_kwargs=kwargs)
    assert result.image.shape == (1, 3, 32, 32)
    assert result.history[-1] < result.history[0]


def test_synthesize_texture_in_phases_is_the_phases_one_after_another():
    """Each phase: synthesize_texture on the exemplar's centre square at the phase's size, from the
    previous result upscaled; the history is every phase's, in order."""
    from perceptual_ext.data.images import center_resize
    from perceptual_ext.train import synthesize_texture_in_phases
    from perceptual_ext.train.synthesis import texture_loss

    texture = sample_image("gravel", channels=3)
    phases = [(16, 4, {"sigma": 0.15}), (32, 3, {"sigma": 0.15}), (32, 2, {"sigma": 0.06})]

    def loss_at(size, options):
        return texture_loss("mmd", size, loss_kwargs=options)

    result = synthesize_texture_in_phases(texture, phases, loss_at, 0.05, progress=False)
    image, history = None, []
    for size, steps, options in phases:
        if image is not None and image.shape[-1] != size:
            image = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        step = synthesize_texture(center_resize(texture, size), loss=loss_at(size, options), size=size, steps=steps,
                                  lr=0.05, init=image, progress=False)
        image, history = step.image, history + step.history
    assert result.image.shape == (1, 3, 32, 32) and len(result.history) == 9
    assert torch.equal(result.image, image) and result.history == history
    with pytest.raises(ValueError, match="phases"):
        synthesize_texture_in_phases(texture, [], loss_at, progress=False)


def test_gim_crops_and_mse_stays_at_the_mean():
    image = sample_image("astronaut", channels=3)
    crops, offsets = shifted_crops(image[None], 16, num_crops=9, shift=4, seed=0)
    assert crops.shape == (9, 3, 16, 16) and all(-4 <= d <= 4 for o in offsets for d in o)
    fast_swd = {"nhoods_per_image": 64, "dir_repeats": 1}
    result = gim_experiment(image, losses=("mse", "l1"), crop_size=32, steps=10, progress=False, swd_kwargs=fast_swd)
    assert set(result.metrics) == {"init_mean", "target_crop", "mse", "l1"}
    assert result.images["mse"].shape == (1, 3, 32, 32)
    torch.testing.assert_close(result.mean, result.crops.mean(0, keepdim=True))
    # the mean is the optimum of MSE: Adam from there barely moves (its first step is lr-sized)
    assert (result.images["mse"] - result.mean).abs().max() < 0.02
    assert result.metrics["mse"]["psnr"] == pytest.approx(result.metrics["init_mean"]["psnr"], abs=0.05)
    assert result.metrics["init_mean"]["psnr"] > result.metrics["l1"]["psnr"] - 1e-6
    for row in result.metrics.values():
        assert len(row["swd_levels"]) == 2 and row["swd"] > 0
    custom = gim_experiment(image, losses={"conv_gram": RandomConvGram()}, crop_size=32, steps=10, progress=False,
                            swd_kwargs=fast_swd)
    assert custom.histories["conv_gram"][-1] < custom.histories["conv_gram"][0]
    with pytest.raises(ValueError, match="at least crop_size"):
        gim_experiment(image, losses=("mse",), crop_size=32, image_size=36, steps=1, progress=False)
    with pytest.raises(TypeError, match="not one string"):
        gim_experiment(image, losses="mse", crop_size=32, steps=1, progress=False)


@pytest.mark.parametrize("make", [
    lambda: PerceptualLoss(layers=("relu1_2", "relu2_2"), layer_weights=(1.0, 0.5), feature="l2"),
    lambda: PerceptualLoss(layers=("relu1_2", "relu2_2"), feature="gram", style_weight=3.0),
    lambda: PerceptualLoss(layers=("relu1_1", "relu2_1"), feature="both", reduction="sum"),
    lambda: SCNNLoss(channels=16, depth=2, window=8, stride=4, seed=3),
], ids=["vgg_l2", "vgg_gram", "vgg_both_sum", "scnn"])
def test_mean_over_targets_is_the_mean_of_the_losses(make):
    """mean_k loss(x, y_k) from the targets' statistics computed once equals the K-fold evaluation
    (value and gradient, float64), for one image and for a batch."""
    loss_fn = make().double()
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(5, 3, 24, 24, generator=generator, dtype=torch.float64)
    objective = loss_fn.mean_over_targets(targets)
    for batch in (1, 2):
        x = torch.rand(batch, 3, 24, 24, generator=generator, dtype=torch.float64, requires_grad=True)
        fast = objective(x)
        per_image = [loss_fn(x[n:n + 1].expand_as(targets), targets) / (1 if loss_fn.reduction == "mean" else 5)
                     for n in range(batch)]
        slow = torch.stack(per_image).mean() if loss_fn.reduction == "mean" else torch.stack(per_image).sum()
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(fast, x)[0], torch.autograd.grad(slow, x)[0],
                                   rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="targets"):
        loss_fn.mean_over_targets(targets[:0])


@pytest.mark.parametrize("losses", [("vgg", "scnn", "mmd", "mmdpp")])
def test_gim_factory_losses(losses):
    for name in losses:
        _needs(FACTORY_LOSSES[name][0])
    kwargs = {name: FACTORY_LOSSES[name][1] for name in losses}
    result = gim_experiment(sample_image("astronaut", channels=3), losses=losses, crop_size=32, steps=5,
                            loss_kwargs=kwargs, progress=False, swd_kwargs={"nhoods_per_image": 64})
    for name in losses:
        assert result.histories[name][-1] < result.histories[name][0]


def test_style_transfer_decreases_objective():
    _needs("perceptual_ext.losses.perceptual")
    content = sample_image("chelsea", channels=3)
    style = sample_image("gravel", channels=3)
    result = style_transfer(content, style, size=32, steps=2, progress=False)
    assert result.image.shape == (1, 3, 32, 32 * content.shape[2] // content.shape[1])
    assert result.history[-1] < result.history[0]
    adam = style_transfer(content, style, size=32, steps=3, optimizer="adam", lr=0.02, init="noise",
                          progress=False)
    assert adam.history[-1] < adam.history[0]
    with pytest.raises(ValueError, match="style_weight must be a number >= 0"):
        style_transfer(content, style, style_weight=-1.0, size=32, steps=1, progress=False)


def test_style_objective_gram_equals_the_perceptual_loss_composition():
    """One shared VGG pass and cached targets give Johnson's objective exactly as PerceptualLoss
    computes its terms (content at relu2_2, Gram at four layers, TV)."""
    from perceptual_ext.losses.perceptual import PerceptualLoss, TVLoss
    from perceptual_ext.train import StyleTransferObjective

    g = torch.Generator().manual_seed(0)
    content, style, x = (torch.rand(1, 3, 32, 40, generator=g) for _ in range(3))
    objective = StyleTransferObjective(content, style, content_weight=2.0, style_weight=5.0, tv_weight=1e-3, seed=3)
    expected = (2.0 * PerceptualLoss(layers=("relu2_2",), feature="l2", seed=3)(x, content)
                + 5.0 * PerceptualLoss(feature="gram", seed=3)(x, style) + 1e-3 * TVLoss()(x))
    torch.testing.assert_close(objective(x), expected, rtol=1e-5, atol=1e-7)


def test_style_transfer_with_a_patch_mmd_style_term():
    from perceptual_ext.train import StyleTransferObjective

    content = sample_image("chelsea", channels=3, size=32)
    style = sample_image("gravel", channels=3)
    result = style_transfer(content, style, steps=4, style_loss="mmd", style_weight=100.0, optimizer="adam",
                            lr=0.02, progress=False)
    assert result.image.shape == (1, 3, 32, 32)
    assert result.history[-1] < result.history[0]
    # a non-square content: windows of the short side; the content term is 0 at the content itself
    wide = sample_image("chelsea", channels=3)[None, :, :24, :40]
    objective = StyleTransferObjective(wide, torch.rand(1, 3, 24, 40), style_loss="mmd", style_weight=1.0)
    terms = objective.terms(wide)
    assert terms["content"] == 0 and terms["style"] > 0
    assert objective.style_loss.window == 24 and objective.style_loss.stride == 12
    # a callable style term is called with (input, style)
    calls = []
    objective = StyleTransferObjective(wide, wide, style_loss=lambda a, b: calls.append(b.shape) or (a - b).sum())
    objective(wide)
    assert calls == [wide.shape]
    with pytest.raises(ValueError, match="style_loss"):
        StyleTransferObjective(wide, wide, style_loss="nope")
    with pytest.raises(TypeError, match="style_loss"):
        StyleTransferObjective(wide, wide, style_loss=3)
    with pytest.raises(ValueError, match="content and style must have the same shape"):
        StyleTransferObjective(wide, wide[..., :20])


def test_texture_loss_gram_defaults_to_shallow_weighted_layers():
    from perceptual_ext.train.synthesis import GRAM_TEXTURE_LAYERS, GRAM_TEXTURE_WEIGHTS, texture_loss

    loss = texture_loss("gram", 32)
    assert loss.vgg.layers == GRAM_TEXTURE_LAYERS == ("relu1_1", "relu2_1", "relu3_1")
    assert loss.layer_weights == list(GRAM_TEXTURE_WEIGHTS)
    own = texture_loss("gram", 32, loss_kwargs={"layers": ("relu2_2",)})
    assert own.vgg.layers == ("relu2_2",) and own.layer_weights == [1.0]
