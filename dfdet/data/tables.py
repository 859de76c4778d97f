"""Declared facts about each deepfake dataset: sources, labels, identity rules, official splits.

Dataset-specific knowledge lives here as data, so the manifest builder and the splitter stay
generic: they look a dataset up in DATASETS and apply its identity rule from IDENTITY_RULES.
Counts are the public release's, where published; None means "not declared here" rather than a
guess. Folder names follow the layout <dataset>/<source>/<video>/<frame> of the paper's code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

IDENTITY_SEP = "+"  # joins the identities of one video in the manifest's identity column


@dataclass(frozen=True)
class SourceSpec:
    name: str  # folder name at the <source> level
    label: int  # 0 real, 1 fake; always equals the generic rule "a source named *real* is real"
    method: str  # what made the videos (capture, or the manipulation method)
    videos: int | None = None  # videos in the public release, where published
    raw: str = ""  # where the raw videos of this source sit in the official download


@dataclass(frozen=True)
class OfficialSplit:
    files: tuple[str, ...]  # file names in the official release
    format: str  # parser key: "ff_pairs_json" (FF++ train/val/test.json) or "cdf_test_list"
    videos: dict = field(default_factory=dict)  # videos per split, where published
    note: str = ""  # how the files are read (label conventions, what is listed)


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # folder name at the <dataset> level, e.g. "FF"
    title: str  # full name for tables
    aliases: tuple[str, ...]  # other spellings accepted as the folder name
    sources: tuple[SourceSpec, ...]  # declared sources (others are allowed, labelled by the generic rule)
    identity: str  # key of IDENTITY_RULES: which people a video name involves
    version: str = ""  # compression level or release used by the paper
    official: OfficialSplit | None = None  # official split files, where the release ships them
    reference: str = ""  # where the facts come from
    note: str = ""  # what to watch out for

    def source(self, name: str) -> SourceSpec | None:
        return next((s for s in self.sources if s.name == name), None)


def _pair_ids(source: str, video: str) -> tuple[str, ...]:
    """FaceForensics++: real "000" is person 000; fake "000_003" puts 003 into 000's video."""
    parts = video.split("_")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return tuple(parts)
    return (video,)


_CDF_ID = re.compile(r"^id\d+$")


def _celebdf_ids(source: str, video: str) -> tuple[str, ...]:
    """Celeb-DF: "id0_0000" is celebrity id0; "id0_id1_0000" swaps id1 into id0's video; YouTube-real has no ids."""
    ids = tuple(p for p in video.split("_") if _CDF_ID.match(p))
    return ids or (video,)


def _dfd_ids(source: str, video: str) -> tuple[str, ...]:
    """DeepFakeDetection: "01__scene" is actor 01; "01_02__scene__CODE" involves actors 01 and 02."""
    head = video.split("__")[0]
    ids = tuple(p for p in head.split("_") if p)
    return ids if ids and all(p.isdigit() for p in ids) else (video,)


def _uadfv_ids(source: str, video: str) -> tuple[str, ...]:
    """UADFV: fake "0001_fake" was made from real "0001"."""
    return (video.removesuffix("_fake"),)


def _video_ids(source: str, video: str) -> tuple[str, ...]:
    """No identity facts in the names: the video name is the identity, so same-named videos group."""
    return (video,)


IDENTITY_RULES: dict[str, Callable[[str, str], tuple[str, ...]]] = {
    "pair": _pair_ids,
    "celebdf": _celebdf_ids,
    "dfd": _dfd_ids,
    "uadfv": _uadfv_ids,
    "video": _video_ids,
}

_FF_RAW = "manipulated_sequences/{}/c23/videos/<target>_<source>.mp4"

DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec(
        name="FF", title="FaceForensics++", aliases=("FF++", "FaceForensics++", "FaceForensics"),
        sources=(
            SourceSpec("real", 0, "YouTube videos", 1000, "original_sequences/youtube/c23/videos/<id>.mp4"),
            SourceSpec("DF", 1, "Deepfakes (autoencoder face swap)", 1000, _FF_RAW.format("Deepfakes")),
            SourceSpec("F2F", 1, "Face2Face (expression reenactment)", 1000, _FF_RAW.format("Face2Face")),
            SourceSpec("FS", 1, "FaceSwap (graphics-based face swap)", 1000, _FF_RAW.format("FaceSwap")),
            SourceSpec("NT", 1, "NeuralTextures (neural rendering reenactment)", 1000,
                       _FF_RAW.format("NeuralTextures")),
        ),
        identity="pair", version="c23",
        official=OfficialSplit(
            files=("train.json", "val.json", "test.json"), format="ff_pairs_json",
            videos={"train": 720, "val": 140, "test": 140},
            note="each file lists [target, source] id pairs; a pair's two real videos and its fakes "
                 "A_B and B_A belong to that split"),
        reference="Rossler et al., ICCV 2019; github.com/ondyari/FaceForensics",
        note="fake A_B takes the video of A and the face or expressions of B: it is grouped with the "
             "real videos of both A and B"),
    DatasetSpec(
        name="CDFv1", title="Celeb-DF v1", aliases=("Celeb-DF-v1", "CelebDF-v1", "CDF1"),
        sources=(
            SourceSpec("Celeb-real", 0, "celebrity interview videos", None, "Celeb-real/<idX>_<clip>.mp4"),
            SourceSpec("YouTube-real", 0, "other YouTube videos", None, "YouTube-real/<clip>.mp4"),
            SourceSpec("Celeb-synthesis", 1, "improved DeepFake face swap", 795,
                       "Celeb-synthesis/<idX>_<idY>_<clip>.mp4"),
        ),
        identity="celebdf",
        official=OfficialSplit(files=("List_of_testing_videos.txt",), format="cdf_test_list",
                               note="one '<label> <source>/<video>.mp4' per line, where label 1 = real, 0 = fake"),
        reference="Li et al., CVPR 2020; github.com/yuezunli/celeb-deepfakeforensics",
        note="408 real videos in all (Celeb-real + YouTube-real); same naming as v2"),
    DatasetSpec(
        name="CDFv2", title="Celeb-DF v2", aliases=("Celeb-DF-v2", "CelebDF-v2", "CDF", "CDF2", "Celeb-DF"),
        sources=(
            SourceSpec("Celeb-real", 0, "celebrity interview videos", 590, "Celeb-real/<idX>_<clip>.mp4"),
            SourceSpec("YouTube-real", 0, "other YouTube videos", 300, "YouTube-real/<clip>.mp4"),
            SourceSpec("Celeb-synthesis", 1, "improved DeepFake face swap", 5639,
                       "Celeb-synthesis/<idX>_<idY>_<clip>.mp4"),
        ),
        identity="celebdf",
        official=OfficialSplit(files=("List_of_testing_videos.txt",), format="cdf_test_list",
                               videos={"test": 518},
                               note="one '<label> <source>/<video>.mp4' per line, where label 1 = real, 0 = fake "
                                    "(the reverse of the manifest's labels)"),
        reference="Li et al., CVPR 2020; github.com/yuezunli/celeb-deepfakeforensics",
        note="cross-dataset protocol: evaluate on the 518 listed test videos only"),
    DatasetSpec(
        name="DFD", title="DeepFakeDetection (Google/Jigsaw)", aliases=("DeepFakeDetection", "DFD"),
        sources=(
            SourceSpec("real", 0, "paid actors, recorded scenes", 363,
                       "original_sequences/actors/c23/videos/<actor>__<scene>.mp4"),
            SourceSpec("fake", 1, "DeepFake face swap between actors", 3068,
                       "manipulated_sequences/DeepFakeDetection/c23/videos/<a>_<b>__<scene>__<code>.mp4"),
        ),
        identity="dfd", version="c23",
        reference="Google/Jigsaw 2019, distributed with FaceForensics++",
        note="28 actors recorded in many scenes: group by actor, never by video, or identities leak"),
    DatasetSpec(
        name="UADFV", title="UADFV", aliases=("UADFV",),
        sources=(
            SourceSpec("real", 0, "YouTube videos", 49, "real/<id>.mp4"),
            SourceSpec("fake", 1, "DeepFake (FakeApp) face swap", 49, "fake/<id>_fake.mp4"),
        ),
        identity="uadfv",
        reference="Yang, Li and Lyu, ICASSP 2019 (head-pose inconsistencies)",
        note="every fake <id>_fake pairs with real <id>; the whole set is a test set"),
    DatasetSpec(
        name="DFDC", title="Deepfake Detection Challenge", aliases=("DFDC",),
        sources=(
            SourceSpec("real", 0, "paid actors", None),
            SourceSpec("fake", 1, "several face swap methods, audio and video", None),
        ),
        identity="video",
        reference="Dolhansky et al., arXiv 2006.07397",
        note="the public test set (5,000 videos) is the usual cross-dataset test; names carry no identity, "
             "but the training metadata.json names each fake's original (pass it as an identity map)"),
    DatasetSpec(
        name="FFIW", title="Face Forensics in the Wild (FFIW-10K)", aliases=("FFIW-10K", "FFIW10K"),
        sources=(
            SourceSpec("real", 0, "multi-person videos in the wild"),
            SourceSpec("fake", 1, "face swap of some of the people in a video"),
        ),
        identity="video",
        reference="Zhou et al., CVPR 2021",
        note="several faces per frame: the largest is kept, check the multi-face frames in the preprocess "
             "report; same-named real and fake videos are grouped by the 'video' rule"),
    DatasetSpec(
        name="GANFaces", title="FFHQ vs StyleGAN2 faces (shared test set)", aliases=(),
        sources=(
            SourceSpec("real", 0, "FFHQ photos, JPEG q=90"),
            SourceSpec("StyleGAN2", 1, "StyleGAN2 whole-face synthesis"),
        ),
        identity="video",
        note="fully synthetic faces, not partial manipulations; a residual compression difference between "
             "classes may remain, so treat results on it with suspicion"),
)}


def lookup(name: str) -> DatasetSpec | None:
    """The spec of a dataset folder name, matching names and aliases without case."""
    key = name.lower()
    for spec in DATASETS.values():
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def identities(dataset: str, source: str, video: str) -> tuple[str, ...]:
    """The dataset-qualified identities a video involves, e.g. FF/DF/000_003 -> (FF/000, FF/003)."""
    spec = lookup(dataset)
    rule = IDENTITY_RULES[spec.identity if spec else "video"]
    return tuple(f"{dataset}/{i}" for i in rule(source, video))


def layouts_markdown() -> str:
    """The declared tables as Markdown; data_manifests/layouts.md is this text (a test keeps them equal)."""
    lines = ["# Dataset layouts and official splits", "",
             "Generated by `dfdet manifest --layouts` from `dfdet/data/tables.py`; do not edit by hand.",
             "Every face set is stored as `<dataset>/<source>/<video>/<frame>.png`. A source whose name",
             "contains `real` is real (label 0); every other source is fake (label 1).", ""]
    for d in DATASETS.values():
        lines += [f"## {d.name}: {d.title}", ""]
        if d.aliases:
            lines.append(f"Also accepted as: {', '.join(d.aliases)}.  ")
        lines.append(f"Identity rule: `{d.identity}` ({IDENTITY_RULES[d.identity].__doc__.strip()})  ")
        if d.version:
            lines.append(f"Version: {d.version}  ")
        if d.reference:
            lines.append(f"Reference: {d.reference}  ")
        lines += ["", "| source | label | made by | videos | raw files |", "|---|---|---|---|---|"]
        for s in d.sources:
            videos = "" if s.videos is None else f"{s.videos:,}"
            lines.append(f"| `{s.name}` | {s.label} | {s.method} | {videos} | {f'`{s.raw}`' if s.raw else ''} |")
        lines.append("")
        if d.official:
            o = d.official
            counts = ", ".join(f"{k} {v:,}" for k, v in o.videos.items())
            lines.append(f"Official split: {', '.join(f'`{f}`' for f in o.files)}"
                         f"{f' ({counts} videos)' if counts else ''}; {o.note}.  ")
        if d.note:
            lines.append(f"Note: {d.note}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
