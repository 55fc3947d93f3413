"""``perceptual-ext fid``: FID (and KID) between two image folders or pytorch-fid ``.npz`` statistics."""
from __future__ import annotations

import json
import os
import sys
import warnings

from ._common import UserError, add_command, add_device_option, check_outputs, device, positive, user_errors


def _add_fid(sub) -> None:
    p = add_command(sub, "fid", _run_fid, help="FID (and KID) between two image folders or .npz statistics")
    p.add_argument("a", metavar="A", help="folder of images or a pytorch-fid .npz (mu, sigma)")
    p.add_argument("b", metavar="B", nargs="?", help="folder of images or a .npz (optional with --save-stats)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="pytorch-fid's Inception weights pt_inception-2015-12-05-6726825d.pth (needed for folders)")
    p.add_argument("--batch-size", type=int, default=50, help="images per forward pass (default: 50)")
    add_device_option(p)
    p.add_argument("--resize", choices=("bilinear", "clean"), default="bilinear",
                   help="to 299x299: bilinear (pytorch-fid, default) or clean (clean-fid's PIL bicubic)")
    p.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes (default: 0)")
    p.add_argument("--save-stats", nargs="+", metavar="X.npz",
                   help="write the statistics of A (and of B, with a second path) as pytorch-fid .npz")
    p.add_argument("--overwrite", action="store_true", help="replace existing --save-stats files")
    p.add_argument("--kid", action="store_true", help="also compute KID (needs image folders, not .npz)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    p.add_argument("--kid-subset-size", type=int, default=None,
                   help="KID subset size (default: 1000, or the smaller set's size if that is less)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_args(args) -> list:
    positive(args.batch_size, "--batch-size")
    positive(args.num_workers, "--num-workers", minimum=0)
    positive(args.kid_subsets, "--kid-subsets")
    positive(args.kid_subset_size, "--kid-subset-size", minimum=2)
    sources = [args.a] + ([args.b] if args.b is not None else [])
    if args.b is None and not args.save_stats:
        raise UserError("B is required unless --save-stats is given (to save A's statistics only)")
    if args.kid and args.b is None:
        raise UserError("--kid needs two inputs A and B")
    saves = args.save_stats or []
    if len(saves) > len(sources):
        raise UserError(f"--save-stats takes at most one path per input ({len(sources)}), got {len(saves)}")
    for path in saves:
        if not path.endswith(".npz"):
            raise UserError(f"--save-stats {path}: the file must end with .npz (pytorch-fid's format)")
    check_outputs(saves, args.overwrite)
    for src in sources:
        if not os.path.exists(src):
            raise UserError(f"no such file or folder: {src}")
        if os.path.isfile(src) and not src.endswith(".npz"):
            raise UserError(f"{src} is neither a folder of images nor a .npz statistics file")
        if args.kid and src.endswith(".npz"):
            raise UserError(f"--kid needs image folders: {src} holds statistics only, not features")
    images = [s for s in sources if os.path.isdir(s)]
    if images and not args.inception_weights:
        raise UserError("--inception-weights FILE is required for image folders (pytorch-fid's "
                        "pt_inception-2015-12-05-6726825d.pth)")
    return sources


def _run_fid(args) -> int:
    """Fréchet Inception distance between A and B (folders of images or pytorch-fid .npz statistics), with
    pytorch-fid's Inception weights read from --inception-weights (pt_inception-2015-12-05-6726825d.pth;
    nothing is downloaded). Unreadable images are skipped and counted. With only A and --save-stats,
    computes and saves A's statistics.

    Examples:
        perceptual-ext fid real/ fake/ --inception-weights pt_inception-2015-12-05-6726825d.pth
        perceptual-ext fid real/ fake/ --inception-weights W.pth --kid --json
        perceptual-ext fid real/ --inception-weights W.pth --save-stats real.npz
        perceptual-ext fid real.npz fake/ --inception-weights W.pth --save-stats real2.npz fake.npz
    """
    from ..features import FIDInceptionV3
    from ..metrics import FeatureStatistics, compute_features, kid

    sources = _check_args(args)
    dev = device(args.device)
    model = None
    if any(os.path.isdir(s) for s in sources):
        if not os.path.isfile(args.inception_weights):
            raise UserError(f"--inception-weights: no such file {args.inception_weights} (pytorch-fid's "
                            "pt_inception-2015-12-05-6726825d.pth)")
        with user_errors("--inception-weights"):
            model = FIDInceptionV3(args.inception_weights, resize=args.resize)
    stats, features, counts, skipped = [], [], [], []
    for name, src in zip("AB", sources):
        if src.endswith(".npz"):
            with user_errors(name):
                s = FeatureStatistics.load(src)
            stats.append(s), features.append(None), counts.append(s.n), skipped.append([])
            continue
        with user_errors(name), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feats, bad = compute_features(src, model, batch_size=args.batch_size, device=dev,
                                          num_workers=args.num_workers, progress=not args.no_progress, desc=name)
        if bad:
            print(f"perceptual-ext fid: skipped {len(bad)} unreadable image(s) in {name} ({src}), e.g. {bad[0]}",
                  file=sys.stderr)
        if feats.shape[0] < 2:
            raise UserError(f"{name}: FID needs at least 2 readable images, {src} has {feats.shape[0]}")
        stats.append(FeatureStatistics().update(feats.double()))
        features.append(feats), counts.append(feats.shape[0]), skipped.append(bad)
    for path, s in zip(args.save_stats or [], stats):
        with user_errors("--save-stats"):
            s.save(path, overwrite=args.overwrite)
    result = {"A": args.a, "B": args.b, "n_A": counts[0], "skipped_A": len(skipped[0]), "resize": args.resize}
    if args.b is not None:
        result.update(n_B=counts[1], skipped_B=len(skipped[1]))
        with user_errors():
            result["fid"] = stats[0].frechet_distance(stats[1])
    if args.kid:
        size = args.kid_subset_size or min(1000, features[0].shape[0], features[1].shape[0])
        with user_errors("--kid"):
            mean, std = kid(features[0], features[1], num_subsets=args.kid_subsets, subset_size=size)
        result.update(kid=mean, kid_std=std, kid_subset_size=size, kid_subsets=args.kid_subsets)
    if args.save_stats:
        result["saved"] = list(args.save_stats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if "fid" in result:
            print(f"FID: {result['fid']:.6f}")
        if args.kid:
            print(f"KID: {result['kid']:.6g} ± {result['kid_std']:.3g} ({args.kid_subsets} subsets of {size})")
        for path in args.save_stats or []:
            print(f"saved {path}")
    return 0


COMMANDS = [_add_fid]
