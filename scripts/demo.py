"""`make demo`: the library's main jobs on scikit-image's bundled samples, one result sheet at the end.

Stages (each prints what it does, then its time and numbers; optimizations show a progress bar):

1. the fused ops' time for one forward+backward against the plain PyTorch composition (and OpenCV
   for template matching), at sizes the stages below use;
2. texture synthesis of `gravel` (256²) side by side with the exemplar, with three losses: patch MMD,
   Gram matrices of VGG16 features (random weights unless --vgg-weights names torchvision's file;
   texture_loss's relu1_1..relu3_1) and the S-CNN, in phases (coarse to fine, or a narrowing
   patch-MMD kernel; see FULL);
3. style transfer by optimization: a 256² `chelsea` in the style of `gravel` (a patch-MMD style term
   and a VGG16 relu2_2 content term: `style_transfer(..., style_loss="mmd")`);
4. the GIM experiment (seed 004): the image that minimizes the mean loss to nine shifted 96² crops
   of `astronaut`, for MSE (the blurry mean), patch MMD and MMD++, scored by SWD and PSNR;
5. template matching (NCC) of three patches of a noisy 512² `camera`, boxes where they were found.

Everything runs on the CPU; the pictures (≥ 256 px), demo_out/index.html (pictures, captions and the
numbers printed here) and demo_out/summary.png (the sheet in one picture) are written to demo_out/.
The last line names the sheet. A stage whose module is missing from this build is reported as
skipped and the demo exits with status 1.

    python scripts/demo.py [--out DIR] [--vgg-weights vgg16-397923af.pth] [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
import time
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import perceptual_ext as pe  # noqa: E402
from perceptual_ext.data import image_grid, sample_image, save_image  # noqa: E402
from perceptual_ext.data.images import center_resize, save_text  # noqa: E402

#: Steps and sizes, meant for a few minutes on 2 idle CPU cores after the build (only measured on a
#: shared, overloaded machine so far: see README). ``--quick`` (the test) shrinks every size and step.
FULL = {
    # texture synthesis: (size, Adam steps, loss options) per phase, each phase starting from the
    # previous result (upscaled when the size grows); the patch-MMD kernel narrows from σ = 0.15
    # (which moves noise towards the texture) to 0.06 (the paper's, sharper details)
    "mmd": [(256, 40, {"sigma": 0.15}), (256, 60, {"sigma": 0.06})], "mmd_lr": 0.05,
    # Gram: relu1_1..relu3_1 weighted 100:10:1 (texture_loss's default), 128² then refined at 256²
    "gram": [(128, 100, {}), (256, 20, {})], "gram_lr": 0.05,
    "scnn": [(64, 150, {}), (128, 60, {}), (256, 25, {})], "scnn_lr": 0.05, "scnn_channels": 256, "scnn_depth": 2,
    # style transfer: a 256² crop of chelsea, patch-MMD style term (random VGG16 content term), Adam
    "style_size": 256, "style_steps": 60, "style_weight": 100.0, "style_lr": 0.05,
    "gim_crop": 96, "gim_steps": 40, "gim_lr": 0.02, "gim_swd_nhoods": 256,
    "match_size": 512, "match_templ": 48,
    "timing_rounds": 2,
}
QUICK = {
    "mmd": [(32, 3, {"sigma": 0.15}), (32, 2, {"sigma": 0.06})], "mmd_lr": 0.05,
    "gram": [(16, 2, {}), (32, 1, {})], "gram_lr": 0.05,
    "scnn": [(16, 3, {}), (32, 2, {})], "scnn_lr": 0.05, "scnn_channels": 16, "scnn_depth": 1,
    "style_size": 32, "style_steps": 2, "style_weight": 100.0, "style_lr": 0.02,
    "gim_crop": 32, "gim_steps": 2, "gim_lr": 0.02, "gim_swd_nhoods": 16,
    "match_size": 128, "match_templ": 12,
    "timing_rounds": 1,
}
#: Where the texture stage's three losses come from (text of the sheet).
TEXTURE = "gravel"


@dataclasses.dataclass
class Picture:
    """A picture of the result sheet: its file (relative to the output folder) and caption."""

    path: str
    caption: str


@dataclasses.dataclass
class Stage:
    """A stage of the demo: what it does, what it printed, its pictures, its time."""

    title: str
    what: str
    lines: List[str] = dataclasses.field(default_factory=list)
    pictures: List[Picture] = dataclasses.field(default_factory=list)
    summary: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: far below threads x seconds on a busy machine
    skipped: bool = False


class Demo:
    """Runs the stages, prints one line per stage (and its numbers), keeps everything for the sheet."""

    def __init__(self, out: str, settings: dict, vgg_weights: Optional[str], progress: bool) -> None:
        self.out, self.s, self.vgg_weights, self.progress = out, settings, vgg_weights, progress
        self.stage: Optional[Stage] = None
        self.textures: List[Tuple[torch.Tensor, str]] = []  # (image, caption), the exemplar first

    def log(self, line: str) -> None:
        """Print a line of numbers under the current stage and keep it for the sheet."""
        print(f"      {line}", flush=True)
        self.stage.lines.append(line)

    def save(self, image: torch.Tensor, name: str, caption: str) -> None:
        save_image(image, os.path.join(self.out, name))
        self.stage.pictures.append(Picture(name, caption))

    def bar(self, label: str):
        return label if self.progress else False

    # ------------------------------------------------------------------------------------ stages

    def fused_ops(self) -> str:
        """Time one forward+backward of each fused op against what users write today."""
        from benchmarks import bench_gram, bench_match_template, bench_rff_patch, bench_scnn

        quick = self.s["timing_rounds"] == 1
        size = 64 if quick else 256
        cases = [
            ("gram B4·C256·HW4096 fwd+bwd", "torch.bmm",
             lambda impl: bench_gram.workload(impl, 4, 256, 4096 if not quick else 256)),
            (f"rff_patch_features F1024 {size}² fwd+bwd", "conv2d+cos+avg_pool2d",
             lambda impl: bench_rff_patch.workload(impl, 1, size)),
            (f"scnn_features C{bench_scnn.CHANNELS}·D{bench_scnn.DEPTH} 64² fwd+bwd", "nn.Sequential of convs",
             lambda impl: bench_scnn.workload(impl, 32 if quick else 64)),
            (f"match_template ncc {2 * size}²·32²", "cv2.matchTemplate",
             lambda impl: bench_match_template.workload(impl, 1, 1, 2 * size, 32)),
        ]
        ratios = []
        for name, anchor_name, make in cases:
            anchor_impl = "opencv" if anchor_name.startswith("cv2") else "composition"
            fused = best_time(make("fused"), self.s["timing_rounds"])
            try:
                anchor = best_time(make(anchor_impl), max(1, self.s["timing_rounds"] - 1))
            except ImportError:  # OpenCV is an extra
                self.log(f"{name}: fused {fused * 1e3:8.1f} ms")
                continue
            ratios.append(anchor / fused)
            self.log(f"{name}: fused {fused * 1e3:8.1f} ms, {anchor_name} {anchor * 1e3:8.1f} ms"
                     f"  ({anchor / fused:.1f}x)")
        return "speed-ups " + ", ".join(f"{r:.1f}x" for r in ratios)

    def _synthesize(self, loss_at: Callable[[int, dict], Callable], schedule, lr: float, label: str):
        """Texture synthesis in phases ``(size, steps, loss options)`` (synthesize_texture_in_phases);
        the first texture stage also records the exemplar for the side-by-side picture."""
        from perceptual_ext.train import synthesize_texture_in_phases

        exemplar = sample_image(TEXTURE, channels=1)
        image, history = synthesize_texture_in_phases(exemplar, schedule, loss_at, lr, lr_decay="cosine", seed=0,
                                                      progress=self.bar(label))
        if not self.textures:
            self.textures.append((center_resize(exemplar, schedule[-1][0]), "exemplar"))
        return image, history

    def _phases(self, key: str) -> str:
        sizes = []
        for size, _, _ in self.s[key]:
            if not sizes or sizes[-1] != f"{size}²":
                sizes.append(f"{size}²")
        return "→".join(sizes) + f", {sum(steps for _, steps, _ in self.s[key])} Adam steps"

    def texture_mmd(self) -> str:
        from perceptual_ext.train.synthesis import texture_loss

        image, history = self._synthesize(
            lambda size, options: texture_loss("mmd", size, loss_kwargs={"channels": 1, **options}), self.s["mmd"],
            self.s["mmd_lr"], "patch MMD")
        self.textures.append((image, "patch MMD"))
        save_image(image, os.path.join(self.out, "texture_mmd.png"))
        self.log(f"patch MMD {history[0]:.3g} -> {history[-1]:.3g} ({len(history)} Adam steps)")
        return f"{len(history)} steps, 3x3 patches, 1024 random Fourier features, one window over the image"

    def texture_gram(self) -> str:
        from perceptual_ext.train.synthesis import GRAM_TEXTURE_LAYERS, texture_loss

        image, history = self._synthesize(
            lambda size, options: texture_loss("gram", size, vgg_weights=self.vgg_weights, loss_kwargs=options),
            self.s["gram"], self.s["gram_lr"], "Gram/VGG16")
        weights = "trained" if self.vgg_weights else "random"
        self.textures.append((image, f"Gram, {weights} VGG16"))
        save_image(image, os.path.join(self.out, "texture_gram.png"))
        self.log(f"Gram loss {history[0]:.3g} -> {history[-1]:.3g} ({len(history)} Adam steps, {weights} VGG16,"
                 f" {', '.join(GRAM_TEXTURE_LAYERS)})")
        return f"{len(history)} steps, {weights} VGG16 weights"

    def texture_scnn(self) -> str:
        from perceptual_ext.train.synthesis import texture_loss

        kwargs = {"in_channels": 1, "channels": self.s["scnn_channels"], "depth": self.s["scnn_depth"]}
        image, history = self._synthesize(
            lambda size, options: texture_loss("scnn", size, loss_kwargs={**kwargs, **options}), self.s["scnn"],
            self.s["scnn_lr"], "S-CNN")
        self.textures.append((image, "S-CNN"))
        self.log(f"S-CNN loss {history[0]:.3g} -> {history[-1]:.3g} ({len(history)} Adam steps,"
                 f" C = {kwargs['channels']}, D = {kwargs['depth']})")
        pictures = [im if im.dim() == 3 else im[0] for im, _ in self.textures]
        self.save(image_grid(pictures, padding=4), "textures.png",
                  f"{TEXTURE}: the exemplar, then " + ", ".join(c for _, c in self.textures[1:]))
        save_image(image, os.path.join(self.out, "texture_scnn.png"))
        return f"{len(history)} steps, C = {kwargs['channels']}, D = {kwargs['depth']}"

    def style_transfer(self) -> str:
        from perceptual_ext.train import style_transfer
        from perceptual_ext.train.synthesis import fit_to

        content = sample_image("chelsea", channels=3, size=self.s["style_size"])
        style = sample_image(TEXTURE, channels=3)
        result = style_transfer(content, style, steps=self.s["style_steps"], style_loss="mmd",
                                style_weight=self.s["style_weight"], optimizer="adam", lr=self.s["style_lr"],
                                lr_decay="cosine", vgg_weights=self.vgg_weights, seed=0,
                                progress=self.bar("style transfer"))
        image = result.image
        h, w = image.shape[-2:]
        content_small = F.interpolate(content[None], size=(h, w), mode="bicubic", antialias=True,
                                      align_corners=False).clamp(0, 1)
        style_crop = fit_to(style[None], h, w)
        self.save(image_grid([content_small[0], style_crop[0], image[0]], padding=4), "style.png",
                  f"content (chelsea), style ({TEXTURE}), result: {w}x{h}")
        save_image(image, os.path.join(self.out, "style_chelsea.png"))
        self.log(f"objective {result.history[0]:.3g} -> {result.history[-1]:.3g} in {len(result.history)}"
                 f" Adam steps (patch-MMD style term, weight {self.s['style_weight']:g}; relu2_2 content term)")
        return f"{w}x{h}, {len(result.history)} Adam steps"

    def gim(self) -> str:
        from perceptual_ext.train import gim_experiment

        crop = self.s["gim_crop"]
        result = gim_experiment(sample_image("astronaut", channels=3), losses=("mmd", "mmdpp"), crop_size=crop,
                                steps=self.s["gim_steps"], lr=self.s["gim_lr"], seed=0,
                                swd_kwargs={"nhoods_per_image": self.s["gim_swd_nhoods"]}, progress=self.progress)
        tiles = [result.crops[0], result.mean[0], result.images["mmd"][0], result.images["mmdpp"][0]]
        scale = max(1, -(-256 // crop))  # nearest-neighbour upscaling to >= 256 px, pixels kept visible
        tiles = [F.interpolate(t[None], scale_factor=scale, mode="nearest")[0] for t in tiles]
        self.save(image_grid(tiles, padding=4), "gim.png",
                  "a target crop, the mean of the 9 crops (= the MSE result), patch MMD, MMD++ "
                  f"({crop}² shown x{scale})")
        names = {"target_crop": "a target crop", "init_mean": "mean = MSE", "mmd": "patch MMD", "mmdpp": "MMD++"}
        self.log(f"{'':14s} SWD x1e3 (lower: sharper)   PSNR to the crops")
        for row in ("target_crop", "init_mean", "mmd", "mmdpp"):
            m = result.metrics[row]
            self.log(f"{names[row]:14s} {m['swd']:8.1f}                {m['psnr']:6.2f} dB")
        return (f"SWD mean {result.metrics['init_mean']['swd']:.1f} -> patch MMD {result.metrics['mmd']['swd']:.1f},"
                f" MMD++ {result.metrics['mmdpp']['swd']:.1f}")

    def template_match(self) -> str:
        from perceptual_ext.ops import find_peaks, match_template

        size, t = self.s["match_size"], self.s["match_templ"]
        image = sample_image("camera", channels=1, size=size)
        # textured spots (flat ones match many places), as fractions of the side
        truth = [(round(y * size / 256), round(x * size / 256)) for y, x in ((40, 60), (60, 120), (190, 60))]
        templates = torch.stack([image[:, y:y + t, x:x + t] for y, x in truth])
        noisy = (image + 0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        match_template(noisy[None], templates, method="ncc")  # warm-up (first call plans and allocates)
        start = time.perf_counter()
        score = match_template(noisy[None], templates, method="ncc")
        seconds = time.perf_counter() - start
        locations, scores = find_peaks(score, k=1)
        found = [tuple(loc) for loc in locations[0, :, 0].tolist()]
        hits = sum(f == g for f, g in zip(found, truth))
        boxes = noisy.expand(3, -1, -1).clone()
        red = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
        for y, x in found:
            for d in (0, 1):  # 2-pixel red boxes where the templates were found
                boxes[:, y:y + t, [x + d, x + t - 1 - d]] = red
                boxes[:, [y + d, y + t - 1 - d], x:x + t] = red
        self.save(boxes, "match.png", f"camera + noise (σ = 0.05), {size}²: where the three {t}² templates were found")
        for (y, x), (gy, gx), s in zip(found, truth, scores[0, :, 0].tolist()):
            self.log(f"template at ({gy}, {gx}) found at ({y}, {x}), NCC {s:.3f}")
        self.log(f"match_template: {seconds * 1e3:.1f} ms for {size}² x 3 templates of {t}² (NCC)")
        return f"{hits}/3 templates found at their true positions"

    # ---------------------------------------------------------------------------------- driving

    def run(self) -> List[Stage]:
        s = self.s
        weights = "trained" if self.vgg_weights else "random"
        plan = [
            (Stage("fused ops", "one forward+backward of each fused op against the PyTorch composition "
                   "(template matching: against OpenCV)"), self.fused_ops),
            (Stage("texture: patch MMD", f"synthesizing {TEXTURE} with the patch-MMD loss ({self._phases('mmd')})"),
             self.texture_mmd),
            (Stage("texture: Gram/VGG16", f"synthesizing {TEXTURE} with Gram matrices of a {weights} VGG16 "
                   f"({self._phases('gram')})"), self.texture_gram),
            (Stage("texture: S-CNN", f"synthesizing {TEXTURE} with the S-CNN loss ({self._phases('scnn')})"),
             self.texture_scnn),
            (Stage("style transfer", f"chelsea in the style of {TEXTURE}: patch-MMD style term, {weights} VGG16 "
                   f"content term, {s['style_steps']} Adam steps"), self.style_transfer),
            (Stage("GIM", f"the image closest to 9 shifted {s['gim_crop']}² crops of astronaut under patch MMD "
                   "and MMD++, scored by SWD"), self.gim),
            (Stage("template matching", "NCC of three templates over a noisy camera, peaks by find_peaks"),
             self.template_match),
        ]
        stages = []
        for i, (stage, fn) in enumerate(plan, 1):
            self.stage = stage
            print(f"[{i}/{len(plan)}] {stage.title}: {stage.what} ...", flush=True)
            start, cpu = time.perf_counter(), time.process_time()
            try:
                stage.summary = fn()
            except ImportError as exc:  # a part of the library this build does not have
                stage.summary, stage.skipped = f"SKIPPED ({exc})", True
            stage.seconds, stage.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            print(f"      {stage.seconds:.1f} s (CPU {stage.cpu_seconds:.1f} s): {stage.summary}", flush=True)
            stages.append(stage)
        return stages


def idle_cores() -> int:
    """The cores the 1-minute load average leaves idle, at least 1: on a busy machine a second torch
    thread waits for a core at every parallel region. Measured on this project's 2-core machine, one
    forward+backward at 256²: quiet, 2 threads took 0.56x (VGG16 to relu3_1), 0.93x (patch MMD) and
    0.51x (S-CNN) the time of 1 thread; at load 8, 2.1x, 4.8x and 0.86x."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def best_time(run: Callable[[], object], rounds: int) -> float:
    """The fastest of ``rounds`` timed calls after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------- the sheet

def write_sheet(out: str, header: str, stages: List[Stage], total: float) -> str:
    """demo_out/index.html: every stage with its pictures, captions and the numbers it printed."""
    parts = [
        "<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<title>perceptual_ext demo</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
        "img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}",
        "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}",
        "figcaption{color:#555;font-size:.95em} table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left} td.n{text-align:right}",
        "</style></head><body>",
        "<h1>perceptual_ext demo</h1>",
        f"<p>{html.escape(header)}</p>",
        "<table><tr><th>stage</th><th>seconds</th><th>CPU seconds</th><th>result</th></tr>",
    ]
    for stage in stages:
        parts.append(f"<tr><td><a href='#{_anchor(stage.title)}'>{html.escape(stage.title)}</a></td>"
                     f"<td class='n'>{stage.seconds:.1f}</td><td class='n'>{stage.cpu_seconds:.1f}</td>"
                     f"<td>{html.escape(stage.summary)}</td></tr>")
    parts.append(f"<tr><th>total</th><th class='n'>{total:.0f}</th><th></th><th></th></tr></table>")
    for stage in stages:
        parts.append(f"<h2 id='{_anchor(stage.title)}'>{html.escape(stage.title)}</h2>")
        parts.append(f"<p>{html.escape(stage.what)} — {stage.seconds:.1f} s. {html.escape(stage.summary)}</p>")
        for picture in stage.pictures:
            parts.append(f"<figure><img src='{html.escape(picture.path)}' alt='{html.escape(picture.caption)}'>"
                         f"<figcaption>{html.escape(picture.caption)}</figcaption></figure>")
        if stage.lines:
            parts.append("<pre>" + html.escape("\n".join(stage.lines)) + "</pre>")
    parts.append("</body></html>")
    return save_text("\n".join(parts) + "\n", os.path.join(out, "index.html"))


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower())


def write_summary(out: str, header: str, stages: List[Stage], width: int = 1100, max_height: int = 320) -> str:
    """demo_out/summary.png: the sheet's pictures with their captions in one image (for the README)."""
    from PIL import Image, ImageDraw, ImageFont

    def font(size, name="DejaVuSans.ttf"):
        try:  # DejaVu has every character printed here (², ·, σ); Pillow's own font may not
            return ImageFont.truetype(name, size)
        except OSError:
            try:
                return ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1: one bitmap size
                return ImageFont.load_default()

    title_font, text_font, mono = font(18), font(14), font(13, "DejaVuSansMono.ttf")
    rows = [("text", "perceptual_ext demo: " + header, title_font)]
    for stage in stages:
        rows.append(("text", f"{stage.title} ({stage.seconds:.0f} s): {stage.summary}", title_font))
        for picture in stage.pictures:
            image = Image.open(os.path.join(out, picture.path)).convert("RGB")
            scale = min(1.0, width / image.width, max_height / image.height)
            if scale < 1.0:
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            rows.append(("text", picture.caption, text_font))
            rows.append(("image", image, None))
        rows += [("text", line, mono) for line in stage.lines]
    pad, line_h = 10, 22
    height = pad + sum((line_h if kind == "text" else item.height + pad) for kind, item, _ in rows) + pad
    sheet = Image.new("RGB", (width + 2 * pad, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for kind, item, f in rows:
        if kind == "text":
            draw.text((pad, y), item, fill=(20, 20, 20), font=f)
            y += line_h
        else:
            sheet.paste(item, (pad, y))
            y += item.height + pad
    path = os.path.join(out, "summary.png")
    sheet.save(path)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_out"), help="output folder (default demo_out/)")
    parser.add_argument("--vgg-weights", default=os.environ.get("PERCEPTUAL_EXT_VGG16"),
                        help="torchvision VGG16 weights file for the Gram and style stages "
                             "(default $PERCEPTUAL_EXT_VGG16, else a random VGG16)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps (a smoke test, not pictures)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores the load average leaves idle, at least 1)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads if args.threads else idle_cores())
    info = pe.build_info()
    header = (f"perceptual_ext {info['version']}, torch {info['torch_version']}, CUDA compiled: "
              f"{info['cuda_compiled']}, {info['num_threads']} threads, {info['cpu_flags']}")
    print(header, flush=True)
    torch.manual_seed(0)
    demo = Demo(args.out, QUICK if args.quick else FULL, args.vgg_weights, progress=sys.stderr.isatty())
    begin, cpu = time.perf_counter(), time.process_time()
    stages = demo.run()
    total, cpu = time.perf_counter() - begin, time.process_time() - cpu
    sheet = write_sheet(args.out, header, stages, total)
    write_summary(args.out, header, stages)
    skipped = sum(stage.skipped for stage in stages)
    shown = os.path.relpath(sheet)
    print(f"done in {total:.0f} s (CPU {cpu:.0f} s){f', {skipped} stage(s) skipped' if skipped else ''}; "
          f"the result sheet: {sheet if shown.startswith('..') else shown}", flush=True)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
