"""A 16-frame video on CPU, four methods, end to end (decode, face detection, forward), against one bare
fp32 forward, with the runtime the Space uses; and the time until the first score is on screen.

Variants, alternating (one run of each per round):
  1 bare fp32 forward           the unit of the goals
  4 methods, one face           bank.predict on one aligned face with --runtime
  video, streamed + overlap     dfdet.video_stream: decode/detect in a thread beside the forward
  video, streamed, sequential   the same without the thread
  video, fp32 batch of 16       the path before this work: all faces first, then torch-fp32 in one batch
Goals (issue #16): four methods on one face <= 1.5x; the 16-frame video <= 20x; first score <= 3x.

    python -m bench.bench_video_cpu --runtime onnx-int8 --rounds 2
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench import common
from bench.common import fmt, secs, table

GOALS = {"face": 1.5, "video": 20.0, "first": 3.0}


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("16-frame video on CPU, end to end, vs one fp32 forward", "results_cpu_video.md")
    p.add_argument("--runtime", default="onnx-int8", help="the fast runtime (dfdet.runtime)")
    p.add_argument("--video", default=str(common.REPO.parent / "shared" / "videos" / "FF" / "real" / "519.mp4"))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--chunk", type=int, default=8, help="faces per forward after the first")
    p.add_argument("--cache", default="", help="runtime artefact folder (default: dfdet's cache)")
    p.add_argument("--no-fp32-video", action="store_true", help="skip the slow fp32 video variant")
    p.set_defaults(rounds=2, warmup=0)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    t_start = time.perf_counter()

    from bench.bench_methods import make_checkpoints
    from dfdet import runtime as rt
    from dfdet.data.faces import AlignConfig, FaceAligner
    from dfdet.inference import DetectorBank
    from dfdet.methods import PAPER_METHODS
    from dfdet.video_stream import stream_video_scores
    from dfdet.viz.compare import predict_faces
    from dfdet.viz.services.compare import video_faces

    clip, _ = common.load_backbone(args.model, device)
    if args.cache:
        rt.cache_dir = lambda weights_file=None: Path(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoints(clip, Path(tmp))
        t = time.perf_counter()
        fast = DetectorBank(clip, tmp, methods=list(PAPER_METHODS), runtime=args.runtime)
        build_s = time.perf_counter() - t
        ref = DetectorBank(clip, tmp, methods=list(PAPER_METHODS))
    aligner = FaceAligner(AlignConfig(size=224))
    faces, _, _ = video_faces(Path(args.video), 1, aligner)
    face = fast.preprocess(faces[:1])
    first_times, stage = [], {}

    def bare():
        with torch.inference_mode():
            ref.backbone(face)

    def four():
        fast.predict(face)

    def stream(overlap):
        def run():
            last = None
            for last in stream_video_scores(fast, args.video, args.frames, aligner, chunk=args.chunk,
                                            overlap=overlap):
                pass
            first_times.append((overlap, last.seconds["first_score"]))
            stage[overlap] = last.seconds
            assert last.done and len(last.faces) >= 1
        return run

    def fp32_video():
        fs, _, _ = video_faces(Path(args.video), args.frames, aligner)
        predict_faces(ref, fs)

    variants = {"1 bare fp32 forward": bare, f"4 methods, one face ({args.runtime})": four,
                "video, streamed + overlap": stream(True), "video, streamed, sequential": stream(False)}
    if not args.no_fp32_video:
        variants["video, fp32, all faces then one batch (before)"] = fp32_video
    tm = common.alternate(variants, args.rounds, args.warmup, device)
    unit = "1 bare fp32 forward"
    firsts = {True: [t for o, t in first_times if o][-args.rounds:], False: [t for o, t in first_times if not o][-args.rounds:]}
    rows = [[n, secs(tm.median(n)), fmt(tm.ratio(n, unit), 2)] for n in variants]
    first_ratio = {o: statistics.median(f / b for f, b in zip(firsts[o], tm.runs[unit])) for o in (True, False)}
    face_r = tm.ratio(f"4 methods, one face ({args.runtime})", unit)
    video_r = min(tm.ratio("video, streamed + overlap", unit), tm.ratio("video, streamed, sequential", unit))
    goals = [["four methods on one face", fmt(face_r, 2), f"<= {GOALS['face']}", _met(face_r, GOALS["face"])],
             ["16-frame video end to end (best streamed variant)", fmt(video_r, 2), f"<= {GOALS['video']}",
              _met(video_r, GOALS["video"])],
             ["first score on screen (overlap)", fmt(first_ratio[True], 2), f"<= {GOALS['first']}",
              _met(first_ratio[True], GOALS["first"])],
             ["first score on screen (sequential)", fmt(first_ratio[False], 2), f"<= {GOALS['first']}",
              _met(first_ratio[False], GOALS["first"])]]
    st = [[("overlap" if o else "sequential")] + [secs(stage[o].get(k)) for k in
                                                 ("decode", "detect", "align", "forward", "first_score", "total")]
          for o in (True, False) if o in stage]
    body = [
        f"Model: {args.model}, random weights; four methods (checkpoints with LayerNorms and heads moved off their "
        f"init); runtime {args.runtime} ({rt.describe(args.runtime)}); video `{Path(args.video).name}`, "
        f"{args.frames} evenly spaced frames, dlib HOG face detection; after the first face, {args.chunk} faces "
        "per forward at most. Runtime build (or cache load) at start: " + f"{build_s:.0f} s.",
        "",
        f"Median over {args.rounds} alternating rounds; `vs 1 fwd` = median per-round ratio to one bare fp32 "
        "forward in the same round.",
        "",
        table(["variant", "s", "vs 1 fwd"], rows),
        "",
        "## Goals",
        "",
        table(["goal", "measured", "target", "result"], goals),
        "",
        "## Where a streamed video's time goes (last round, s; decode/detect/align run in the thread with overlap)",
        "",
        table(["variant", "decode", "detect", "align", "forward", "first score", "total"], st),
        "",
        f"- wall time of this run: {time.perf_counter() - t_start:.0f} s",
        "",
        "## Raw runs (s, in round order)",
        "",
        tm.raw(),
        "- first score, overlap: " + ", ".join(secs(t) for t in firsts[True]),
        "- first score, sequential: " + ", ".join(secs(t) for t in firsts[False]),
    ]
    return common.write_report(args.out, "A video on CPU, end to end",
                               common.command_line("bench.bench_video_cpu", argv), device, "\n".join(body))


def _met(x: float, goal: float) -> str:
    return "met" if x <= goal else "MISSED"


if __name__ == "__main__":
    print(main())
