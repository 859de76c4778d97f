"""Videos or images -> aligned face crops in the <dataset>/<source>/<video>/<frame> layout, plus a report.

Input paths keep their relative place: <in>/FF/real/004.mp4 becomes the folder <out>/FF/real/004/
holding one crop per sampled frame (000.png, 103.png, ... named by frame index); an image
<in>/a/b/c.jpg becomes the crop <out>/a/b/c.png. Each finished input gets a record in
<out>/.preprocess/ written after its crops, so a re-run skips it (resume); frames without a face
and frames with several faces are listed in the record and in <out>/preprocess_report.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .faces import AlignConfig, FaceAligner, check_config, to_rgb_array
from .manifest import IMAGE_EXTS
from .video import DEFAULT_MAX_FRAMES, DEFAULT_N_FRAMES, VIDEO_EXTS, iter_video_faces, plan_indices, probe

RECORDS = ".preprocess"  # per-input records under the output folder (resume state)
REPORT = "preprocess_report.json"  # the summary of every input, rewritten at the end of each run
CROP_EXTS = ("png", "jpg")


# Named settings. "dfb" reproduces DeepfakeBench's preprocessing, which made the crops the paper
# trained on (SCLBD/DeepfakeBench preprocessing/preprocess.py): 256 px crops, HOG with one upsampling
# pass on the full frame, dlib's box unclipped, a second detection on the aligned crop, frame indices
# np.linspace(..., dtype=int) over the whole video, every frame decoded. "fast" is dfdet's quicker earlier
# default, which samples within the first DEFAULT_MAX_FRAMES frames (a bound on decoding time).
PROFILES: dict[str, dict] = {
    "dfb": {"fast": False, "index_rule": "truncate", "max_frames": 0,
            "align": {"size": 256, "upsample": 1, "retry_upsample": False, "detect_max_side": 0,
                      "detect_color": True, "clip_boxes": False, "redetect": True}},
    "fast": {"fast": True, "index_rule": "round", "max_frames": DEFAULT_MAX_FRAMES,
             "align": {"size": 224, "upsample": 0, "retry_upsample": True, "detect_max_side": 640,
                       "detect_color": False, "clip_boxes": True, "redetect": False}},
}


def _dfb_align() -> AlignConfig:
    return AlignConfig(**PROFILES["dfb"]["align"])


@dataclass
class PreprocessConfig:
    n_frames: int = DEFAULT_N_FRAMES  # frames per video, evenly spaced (DeepfakeBench: 32)
    every: int | None = None  # take every k-th frame instead (overrides n_frames)
    max_frames: int = 0  # sample among at most this many first frames (reported); 0 = the whole video (dfb)
    fast: bool = False  # True: sparse samples decode only reference frames (~2x faster; index may move by 1-2)
    index_rule: str = "truncate"  # "truncate" (DeepfakeBench's linspace dtype=int) or "round"
    align: AlignConfig = field(default_factory=_dfb_align)  # detector, crop size and scale (profile "dfb")
    profile: str = "dfb"  # the named profile these settings started from (recorded; see PROFILES)
    ext: str = "png"  # crop format: png (lossless) or jpg (quality 95)
    workers: int = 2  # processes, one input at a time each; 1 = in this process
    prefix: str = ""  # folders put before each output path, e.g. "FF/real" for a flat folder of videos

    def key(self) -> str:
        """Hash of everything that changes the crops: a record with another key is redone."""
        d = dataclasses.asdict(self)
        for k in ("workers", "prefix"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def profile_config(name: str, **overrides) -> PreprocessConfig:
    """A PreprocessConfig from a named profile; overrides may name PreprocessConfig or AlignConfig fields."""
    if name not in PROFILES:
        raise DataError(f"unknown preprocessing profile {name!r}; choose one of {', '.join(PROFILES)}")
    prof = PROFILES[name]
    align_keys = {f.name for f in dataclasses.fields(AlignConfig)}
    align = {**prof["align"], **{k: v for k, v in overrides.items() if k in align_keys}}
    rest = {"fast": prof["fast"], "index_rule": prof["index_rule"], "max_frames": prof["max_frames"],
            **{k: v for k, v in overrides.items() if k not in align_keys}}
    return PreprocessConfig(profile=name, align=AlignConfig(**align), **rest)


def find_inputs(root: Path) -> list[Path]:
    """Videos and images under root (or root itself when it is one file), sorted."""
    exts = VIDEO_EXTS | IMAGE_EXTS
    if root.is_file():
        return [root] if root.suffix.lower() in exts else []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _rel(path: Path, root: Path) -> Path:
    return Path(path.name) if root.is_file() else path.relative_to(root)


def _save_atomic(image, path: Path, ext: str) -> None:
    """Temp file + rename: an interrupt never leaves a half-written crop under its real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if ext == "jpg":
            image.save(tmp, format="JPEG", quality=95)
        else:
            image.save(tmp, format="PNG", compress_level=1)  # lossless either way; level 6 is 4x slower for 8% less
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _worker_init() -> None:
    """Ctrl-C is the main process's to handle (it stops the workers); SIGTERM makes a worker unwind
    quietly, so its finally blocks remove temp files and no traceback reaches the terminal."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


_ALIGNER: FaceAligner | None = None  # one per worker process (the landmark model is ~100 MB)


def _aligner(cfg: AlignConfig) -> FaceAligner:
    global _ALIGNER
    if _ALIGNER is None or _ALIGNER.cfg != cfg:
        _ALIGNER = FaceAligner(cfg)
    return _ALIGNER


def process_one(src: str, out_stem: str, cfg: PreprocessConfig) -> dict:
    """Crops for one video or image; returns its record (never raises for bad input: status 'error')."""
    src_p, stem = Path(src), Path(out_stem)
    is_video = src_p.suffix.lower() in VIDEO_EXTS
    rec = {"input": src, "kind": "video" if is_video else "image", "status": "ok", "frames": 0, "crops": 0,
           "files": [], "no_face_frames": [], "multi_face_frames": {}, "message": "",
           "seconds": {"decode": 0.0, "detect": 0.0, "align": 0.0, "write": 0.0}}
    t_start = time.perf_counter()
    try:
        aligner = _aligner(cfg.align)
        if is_video:
            info = probe(src_p, cfg.max_frames)
            planned, capped = plan_indices(info.n_frames, cfg.n_frames, cfg.every, cfg.max_frames, cfg.index_rule)
            width = max(3, len(str(max(planned, default=0))))
            items = ((f.index, f.faces) for f in iter_video_faces(
                src_p, aligner, cfg.n_frames, cfg.every, cfg.max_frames, rec["seconds"], info, cfg.fast,
                cfg.index_rule))
            rec.update(fps=info.fps, video_frames=info.n_frames, planned=len(planned), capped=bool(capped))
            notes = [capped] if capped else []
        else:
            t = time.perf_counter()
            rgb = to_rgb_array(src_p)
            rec["seconds"]["decode"] += time.perf_counter() - t
            items = iter([(0, aligner(rgb, rec["seconds"]))])
            notes = []
        for index, faces in items:
            rec["frames"] += 1
            if not faces.crops:
                rec["no_face_frames"].append(index)
                continue
            if faces.n_faces > 1:
                rec["multi_face_frames"][str(index)] = faces.n_faces
            t = time.perf_counter()
            for k, crop in enumerate(faces.crops):
                if is_video:
                    name = f"{index:0{width}d}" + (f"_{k}" if k else "")
                    path = stem / f"{name}.{cfg.ext}"
                else:
                    path = stem.with_name(stem.name + (f"_{k}" if k else "") + f".{cfg.ext}")
                _save_atomic(crop, path, cfg.ext)
                rec["files"].append(path.as_posix())
                rec["crops"] += 1
            rec["seconds"]["write"] += time.perf_counter() - t
        if is_video and rec["frames"] < len(planned):
            notes.append(f"the video ended early: {rec['frames']} of {len(planned)} planned frames decoded")
        if rec["frames"] == 0:
            rec["status"], notes = "error", notes + ["no frame could be decoded"]
        elif rec["crops"] == 0:
            rec["status"] = "no_face"
            notes.append(f"no face found in any of the {rec['frames']} sampled frame(s) "
                         f"(dlib {cfg.align.detector.upper()} detector)")
        elif rec["no_face_frames"]:
            notes.append(f"no face in {len(rec['no_face_frames'])} of {rec['frames']} sampled frames")
        if rec["multi_face_frames"]:
            notes.append(f"{len(rec['multi_face_frames'])} frame(s) with several faces; "
                         + ("kept all" if cfg.align.all_faces else "kept the largest"))
        rec["message"] = "; ".join(notes)
    except DataError as err:
        rec["status"], rec["message"] = "error", str(err)
    except Exception as err:  # noqa: BLE001 - one odd file (codec, dlib, disk) must not stop a long batch
        rec["status"], rec["message"] = "error", f"unexpected {type(err).__name__}: {err}"
    rec["seconds"]["total"] = time.perf_counter() - t_start
    rec["seconds"] = {k: round(v, 4) for k, v in rec["seconds"].items()}
    return rec


@dataclass
class PreprocessReport:
    records: list[dict]  # one per input, in input order
    skipped: int  # inputs already finished by an earlier run with the same settings
    seconds: float  # wall time of this run
    path: Path | None = None  # where the JSON report was written

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status)

    def summary(self) -> str:
        frames = sum(r["frames"] for r in self.records)
        crops = sum(r["crops"] for r in self.records)
        no_face = sum(len(r["no_face_frames"]) for r in self.records)
        multi = sum(len(r["multi_face_frames"]) for r in self.records)
        capped = sum(1 for r in self.records if r.get("capped"))
        done = len(self.records) - self.skipped
        lines = [f"{len(self.records)} inputs: {self.count('ok')} ok, {self.count('no_face')} without any face, "
                 f"{self.count('error')} errors ({self.skipped} skipped as already finished, {done} processed "
                 f"in {self.seconds:.1f} s)",
                 f"{frames} frames sampled, {crops} crops written, {no_face} frames without a face, "
                 f"{multi} frames with several faces"]
        if capped:
            lines.append(f"{capped} long video(s) were only read up to max_frames (see the report)")
        for r in self.records:
            if r["status"] != "ok":
                lines.append(f"  {r['status']}: {r['input']}: {r['message']}")
        if self.path:
            lines.append(f"report: {self.path}")
        return "\n".join(lines)


def preprocess(src: str | Path, out: str | Path, cfg: PreprocessConfig | None = None,
               progress: bool = True) -> PreprocessReport:
    """Align faces of every video/image under src into out; resumable, parallel over inputs."""
    from tqdm import tqdm
    cfg = cfg or PreprocessConfig()
    if cfg.ext not in CROP_EXTS:
        raise DataError(f"crop format must be one of {CROP_EXTS}, got {cfg.ext!r}")
    plan_indices(1, cfg.n_frames, cfg.every, cfg.max_frames, cfg.index_rule)  # bad settings fail before any work
    check_config(cfg.align)  # bad detector / size / missing model files fail here, before any work
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"input not found: {src}")
    inputs = find_inputs(src)
    if not inputs:
        raise DataError(f"no videos ({', '.join(sorted(VIDEO_EXTS))}) or images under {src}")
    if src.is_dir() and (out.resolve() == src.resolve() or src.resolve() in out.resolve().parents):
        raise DataError(f"the output folder {out} must not be inside the input folder {src} "
                        "(its crops would be read as inputs on the next run)")
    stems: dict[Path, Path] = {}
    for path in inputs:
        stem = _rel(path, src).with_suffix("")
        if stem in stems:
            raise DataError(f"{stems[stem]} and {path} would write to the same output {stem}; rename one")
        stems[stem] = path
    key = cfg.key()
    t0 = time.perf_counter()
    records: dict[int, dict] = {}
    todo = []
    for n, path in enumerate(inputs):
        rel = _rel(path, src)
        stem = out / cfg.prefix / rel.with_suffix("")
        rec_path = out / RECORDS / cfg.prefix / rel.with_name(rel.name + ".json")
        old = _read_record(rec_path)
        if old and old.get("key") == key and old.get("status") != "error":
            records[n] = old
            continue
        if old:  # finished with other settings: remove its crops before making new ones
            for f in old.get("files", []):
                (out / f).unlink(missing_ok=True)
        todo.append((n, path, stem, rec_path))
    skipped = len(records)

    def finish(n: int, rec_path: Path, rec: dict) -> None:
        rec["files"] = [Path(f).relative_to(out).as_posix() for f in rec["files"]]
        rec["input"] = _rel(inputs[n], src).as_posix()
        rec["output"] = (Path(cfg.prefix) / _rel(inputs[n], src).with_suffix("")).as_posix()
        rec["key"] = key
        if rec["status"] != "error":
            _write_json_atomic(rec, rec_path)  # written last: the input counts as finished only now
        records[n] = rec

    bar = tqdm(total=len(inputs), initial=skipped, unit="input", disable=not progress, desc="preprocess")
    if cfg.workers <= 1 or len(todo) <= 1:
        for n, path, stem, rec_path in todo:
            finish(n, rec_path, process_one(str(path), str(stem), cfg))
            bar.update()
    else:
        import multiprocessing as mp
        ex = ProcessPoolExecutor(max_workers=min(cfg.workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init)
        try:
            futures = {ex.submit(process_one, str(path), str(stem), cfg): (n, rec_path)
                       for n, path, stem, rec_path in todo}
            for fut in as_completed(futures):
                n, rec_path = futures[fut]
                finish(n, rec_path, fut.result())
                bar.update()
        except BaseException:
            # Ctrl-C / SIGTERM: stop now instead of draining the queue. Workers get SIGTERM and unwind;
            # inputs without a record are redone by the next run.
            for proc in list(getattr(ex, "_processes", {}).values()):  # no public API before Python 3.14
                proc.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
    bar.close()
    report = PreprocessReport([records[n] for n in sorted(records)], skipped, time.perf_counter() - t0)
    report.path = out / REPORT
    _write_json_atomic({"config": dataclasses.asdict(cfg), "key": key, "skipped": skipped,
                        "seconds": round(report.seconds, 3), "inputs": report.records}, report.path)
    return report


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # missing or half-written: redo that input
