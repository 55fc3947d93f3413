"""``perceptual-ext lpips`` (LPIPS distance of two images or two folders) and ``perceptual-ext bapps``
(the 2AFC / JND table of any distance of the library on the BAPPS dataset)."""
from __future__ import annotations

import json
import os
import sys

from ._common import UserError, add_command, add_device_option, check_outputs, device, positive, read_image, user_errors

NETS = ("alex", "vgg", "squeeze")
#: distances of ``bapps`` besides the factory's losses: LPIPS with the --net/--*-weights options,
#: 1 - SSIM, and -PSNR (each a distance: smaller = more similar).
EXTRA_DISTANCES = ("lpips", "ssim", "psnr")
RANDOM_NOTE = ("note: --backbone-weights not given: a seeded random {net} backbone; these distances are not "
               "the published LPIPS")


def _lpips_options(p) -> None:
    p.add_argument("--net", default="alex", choices=NETS, help="LPIPS backbone (default alex, lpips's default)")
    p.add_argument("--backbone-weights", metavar="PTH",
                   help="torchvision state dict of the backbone (alexnet-owt-7be5be79.pth, vgg16-397923af.pth, "
                        "squeezenet1_1-b8a52dc0.pth); default: a seeded random backbone (not the published LPIPS)")
    p.add_argument("--lin-weights", metavar="PTH",
                   help="the lpips package's lin file for --net (lpips/weights/v0.1/<net>.pth); default: unit "
                        "weights (lpips's lpips=False baseline)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random backbone (default 0)")


def _build_lpips(args, dev, spatial: bool = False, reduction: str = "none"):
    from ..losses import LPIPS

    with user_errors("LPIPS weights"):
        model = LPIPS(args.net, backbone_weights=args.backbone_weights, lin_weights=args.lin_weights,
                      spatial=spatial, reduction=reduction, seed=args.seed)
    return model.to(dev).eval()


def _notes(args, notes, used_lpips: bool = True) -> None:
    """Remarks for stderr, printed after a successful run (an error stays one line)."""
    if used_lpips and args.backbone_weights is None:
        notes = list(notes) + [RANDOM_NOTE.format(net=args.net)]
    for note in notes:
        print(note, file=sys.stderr)


# ---- lpips ------------------------------------------------------------------------------------

def _add_lpips(sub) -> None:
    p = add_command(sub, "lpips", _run_lpips,
                    help="LPIPS distance of two images, or of two folders matched by file name")
    p.add_argument("a", metavar="A", help="image file (or sample:NAME), or a folder of images")
    p.add_argument("b", metavar="B", help="image file, or a folder with images of the same names as A's")
    _lpips_options(p)
    p.add_argument("--json", action="store_true", help="print JSON (net, weights, distances, mean)")
    p.add_argument("--spatial-out", metavar="PNG|DIR",
                   help="write the distance map (grayscale, scaled by its maximum, which is printed): a PNG for "
                        "two files, a folder (created) of <name>.png for two folders")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing --spatial-out files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _pairs(a: str, b: str, notes: list):
    """[(name, path_a, path_b)] for two files or two folders (paired by file name)."""
    from ..data import list_images

    a_dir, b_dir = os.path.isdir(a), os.path.isdir(b)
    if a_dir != b_dir:
        raise UserError(f"A and B must both be image files or both be folders, got {a!r} and {b!r}")
    if not a_dir:
        return [(os.path.basename(a), a, b)], False
    names_a = {os.path.basename(p): p for p in list_images(a)}
    names_b = {os.path.basename(p): p for p in list_images(b)}
    common = sorted(set(names_a) & set(names_b))
    if not common:
        raise UserError(f"no image file name is in both {a} and {b}")
    only = sorted(set(names_a) ^ set(names_b))
    if only:
        notes.append(f"note: {len(only)} image(s) in only one folder were skipped: {', '.join(only[:5])}"
                     f"{' ...' if len(only) > 5 else ''}")
    return [(n, names_a[n], names_b[n]) for n in common], True


def _map_image(d):
    """A [1, 1, H, W] distance map as a [1, H, W] image in [0, 1], scaled by its maximum."""
    peak = float(d.max())
    return (d[0] / peak if peak > 0 else d[0]).clamp(0, 1), peak


def _run_lpips(args) -> int:
    r"""LPIPS v0.1 distance (Zhang et al. 2018) between A and B: two image files (or sample:NAME), or two
    folders whose images are paired by file name. Weights come from your files: the backbone from
    torchvision's state dict, the lin layers from the lpips package's file. Prints the distance (one per
    pair and their mean for folders), or JSON with --json.

    Examples:
        perceptual-ext lpips a.png b.png --net vgg --backbone-weights vgg16-397923af.pth \
            --lin-weights lpips/weights/v0.1/vgg.pth
        perceptual-ext lpips outputs/ references/ --json > distances.json
        perceptual-ext lpips a.png b.png --spatial-out map.png
    """
    import torch
    from tqdm.auto import tqdm

    from ..data import save_image

    notes = []
    pairs, folders = _pairs(args.a, args.b, notes)
    if not folders:  # read both before any work, so a bad file is the only message
        first = (read_image(args.a, "A"), read_image(args.b, "B"))
    if args.spatial_out:
        if folders:
            if os.path.exists(args.spatial_out) and not os.path.isdir(args.spatial_out):
                raise UserError(f"--spatial-out {args.spatial_out} must be a folder when A and B are folders")
            check_outputs([os.path.join(args.spatial_out, os.path.splitext(n)[0] + ".png") for n, _, _ in pairs],
                          args.overwrite, images=True)
        else:
            check_outputs([args.spatial_out], args.overwrite, images=True)
    dev = device(args.device)
    model = _build_lpips(args, dev, spatial=bool(args.spatial_out))
    distances, peaks = {}, {}
    with tqdm(pairs, desc="lpips", disable=args.quiet or not folders, dynamic_ncols=True) as bar, torch.no_grad():
        for name, path_a, path_b in bar:
            x, y = first if not folders else (read_image(path_a, "A"), read_image(path_b, "B"))
            if x.shape != y.shape:
                raise UserError(f"{name}: A is {x.shape[1]}x{x.shape[2]} and B is {y.shape[1]}x{y.shape[2]} pixels; "
                                "LPIPS compares images of one size")
            with user_errors(name):
                d = model(x[None].to(dev), y[None].to(dev))
            if args.spatial_out:
                distances[name] = float(d.mean())  # the spatial map's mean is the distance (up to upsampling)
                image, peaks[name] = _map_image(d.cpu())
                out = os.path.join(args.spatial_out, os.path.splitext(name)[0] + ".png") if folders \
                    else args.spatial_out
                with user_errors(f"cannot write {out}"):
                    save_image(image, out, overwrite=args.overwrite)
            else:
                distances[name] = float(d[0])
    mean = sum(distances.values()) / len(distances)
    if args.json:
        result = {"net": args.net, "backbone_weights": args.backbone_weights, "lin_weights": args.lin_weights,
                  "distances": distances, "mean": mean}
        if peaks:
            result["spatial_max"] = peaks
        print(json.dumps(result, indent=2))
    elif folders:
        for name, value in distances.items():
            print(f"{name}\t{value:.6f}")
        print(f"mean\t{mean:.6f}")
    else:
        print(f"{mean:.6f}")
    if peaks and not args.json:
        notes.append(f"spatial map scaled by its maximum {max(peaks.values()):.6f} -> {args.spatial_out}")
    _notes(args, notes)
    return 0


# ---- bapps ------------------------------------------------------------------------------------

def _distance_names():
    from ..losses.factory import LOSSES

    return EXTRA_DISTANCES + tuple(n for n in LOSSES if n not in EXTRA_DISTANCES)


def _add_bapps(sub) -> None:
    p = add_command(sub, "bapps", _run_bapps,
                    help="2AFC and JND scores of distances on the BAPPS dataset (the paper's table)",
                    distances=", ".join(_distance_names()))
    p.add_argument("root", metavar="ROOT", help="the BAPPS folder (holding 2afc/ and/or jnd/)")
    p.add_argument("--distance", default="lpips,ssim,psnr",
                   help="comma-separated distances (default lpips,ssim,psnr)")
    p.add_argument("--kind", default="2afc,jnd", help="2afc, jnd or both (default 2afc,jnd; a missing one is skipped)")
    p.add_argument("--split", default="val", choices=("val", "train"), help="2AFC split (default val)")
    p.add_argument("--subsets", help="comma-separated subsets (default: every subset folder present)")
    p.add_argument("--limit", type=int, help="at most this many items per subset (quick runs)")
    p.add_argument("--batch-size", type=int, default=50, help="patches per batch (default 50)")
    _lpips_options(p)
    p.add_argument("--vgg-weights", metavar="PTH", help="torchvision VGG16 state dict for the vgg/gram distances")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _distance(name: str, args, dev):
    """A callable (x, y) -> [N] distances for images in [0, 1]."""
    from ..metrics import psnr, ssim

    if name == "lpips":
        return _build_lpips(args, dev)
    if name == "ssim":
        return lambda x, y: 1.0 - ssim(x, y, reduction="none")
    if name == "psnr":
        return lambda x, y: -psnr(x, y, reduction="none")
    from ..losses.factory import build_loss

    with user_errors(f"distance {name}"):
        loss = build_loss(name, vgg_weights=args.vgg_weights, seed=args.seed, reduction="none").to(dev)

    def per_image(x, y):
        d = loss(x, y)
        return d.flatten(1).mean(1) if d.dim() > 1 else d

    return per_image


def _score_subset(data, indices, distances, kind, batch_size, dev, bar):
    """{distance: score} of one subset: 2AFC or JND."""
    import torch

    from ..metrics import jnd_map, two_afc_score

    found = {name: ([], []) for name in distances}
    judgements = []
    for start in range(0, len(indices), batch_size):
        items = [data[i] for i in indices[start:start + batch_size]]
        stack = {k: torch.stack([it[k] for it in items]).to(dev) for k in ("ref", "p0", "p1") if k in items[0]}
        judgements += [it["judge" if kind == "2afc" else "same"] for it in items]
        for name, fn in distances.items():
            with torch.no_grad(), user_errors(f"distance {name}"):
                if kind == "2afc":
                    # one call for both sides, so random-feature distances use the same draws for d0 and d1
                    both = fn(torch.cat([stack["ref"], stack["ref"]]), torch.cat([stack["p0"], stack["p1"]]))
                    found[name][0].append(both[:len(items)].cpu())
                    found[name][1].append(both[len(items):].cpu())
                else:
                    found[name][0].append(fn(stack["p0"], stack["p1"]).cpu())
        bar.update(len(items))
    scores = {}
    for name, (first, second) in found.items():
        if kind == "2afc":
            scores[name] = two_afc_score(torch.cat(first), torch.cat(second), judgements)
        else:
            same = torch.tensor(judgements)
            scores[name] = jnd_map(torch.cat(first), same) if same.sum() > 0 else float("nan")
    return scores


def _run_bapps(args) -> int:
    r"""Score distances on BAPPS (Zhang et al. 2018) as the paper does: for every subset, the 2AFC
    agreement with the human judges and the JND mean average precision. ROOT holds the dataset's 2afc/
    and jnd/ folders (download it yourself, e.g. with the lpips repository's scripts/download_dataset.sh).
    Distances: {distances} (lpips uses --net/--backbone-weights/--lin-weights; vgg/gram use --vgg-weights).

    Examples:
        perceptual-ext bapps dataset/ --distance lpips,ssim,psnr --net alex \
            --backbone-weights alexnet-owt-7be5be79.pth --lin-weights alex.pth
        perceptual-ext bapps dataset/ --distance vgg,scnn,mmd --vgg-weights vgg16.pth --json
    """
    from tqdm.auto import tqdm

    from ..data import BAPPS

    names = [n.strip() for n in args.distance.split(",") if n.strip()]
    known = _distance_names()
    for n in names:
        if n not in known:
            raise UserError(f"--distance: unknown distance {n!r}; choose from {', '.join(known)}")
    if not names or len(set(names)) != len(names):
        raise UserError(f"--distance must name distinct distances, got {args.distance!r}")
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    for k in kinds:
        if k not in ("2afc", "jnd"):
            raise UserError(f"--kind must be 2afc, jnd or 2afc,jnd, got {args.kind!r}")
    positive(args.batch_size, "--batch-size")
    positive(args.limit, "--limit")
    if not os.path.isdir(args.root):
        raise UserError(f"BAPPS folder not found: {args.root}")
    subsets = [s.strip() for s in args.subsets.split(",")] if args.subsets else None
    datasets, notes = {}, []
    for kind in kinds:
        split = args.split if kind == "2afc" else "val"
        if not os.path.isdir(os.path.join(args.root, kind, split)):
            notes.append(f"note: no {kind}/{split} folder in {args.root}; {kind} skipped")
            continue
        with user_errors():
            datasets[kind] = BAPPS(args.root, kind=kind, split=split, subsets=subsets)
    if not datasets:
        raise UserError(f"{args.root} holds neither 2afc/{args.split} nor jnd/val")
    dev = device(args.device)
    distances = {name: _distance(name, args, dev) for name in names}
    plan = {}
    for kind, data in datasets.items():
        for subset in data.subsets:
            indices = [i for i, item in enumerate(data.items) if item["subset"] == subset]
            plan[(kind, subset)] = indices[:args.limit] if args.limit else indices
    results = {}
    with tqdm(total=sum(len(v) for v in plan.values()), desc="bapps", disable=args.quiet, dynamic_ncols=True) as bar:
        for (kind, subset), indices in plan.items():
            scores = _score_subset(datasets[kind], indices, distances, kind, args.batch_size, dev, bar)
            results.setdefault(kind, {})[subset] = {"n": len(indices), **scores}
    if args.json:
        print(json.dumps({"distances": names, "results": results}, indent=2))
        _notes(args, notes, "lpips" in names)
        return 0
    for kind, table in results.items():
        title = "2AFC (agreement with humans)" if kind == "2afc" else "JND (mAP)"
        print(f"{title}\n| subset | n | " + " | ".join(names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for subset, row in table.items():
            print(f"| {subset} | {row['n']} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")
        if len(table) > 1:
            print("| mean | - | " + " | ".join(f"{sum(r[n] for r in table.values()) / len(table):.4f}" for n in names)
                  + " |")
        print()
    _notes(args, notes, "lpips" in names)
    return 0


COMMANDS = [_add_lpips, _add_bapps]
