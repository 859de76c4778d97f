"""Class descriptions: the sentences a text method compares each image with.

A description file holds one sentence per line. How files are read (documented behaviour):
- surrounding whitespace is stripped and blank lines are skipped, so a trailing newline or an
  empty line between sentences changes nothing;
- repeats within a class are kept: every line is one description, so a repeated sentence weighs
  more in the class mean (the thesis's 550desc set repeats its ~53 real / ~70 fake sentences on
  purpose);
- a class with no sentence, a sentence listed under both classes, a sentence longer than CLIP's
  context, or a file that is missing or not UTF-8 text is a DataError naming the file and line.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import shared_dir
from ..errors import DataError

CLASSES = ("real", "fake")  # index = label: 0 real, 1 fake
MAX_TOKENS = 75  # CLIP's context is 77 tokens including start and end; longer text would be cut silently

# The thesis's sets, as (real file, fake file) under <shared>/text/thesis_descriptions.
THESIS_SETS: dict[str, tuple[str, str]] = {
    "1desc": ("1descr/the_real.txt", "1descr/the_fake.txt"),
    "10desc": ("10desc/10_real.txt", "10desc/10_fake.txt"),
    "550desc": ("550desc/550_real.txt", "550desc/550_fake.txt"),
}


def thesis_dir() -> Path:
    return shared_dir() / "text" / "thesis_descriptions"


@dataclass(frozen=True)
class Descriptions:
    """Real and fake sentences of one description set."""
    name: str  # thesis set name or the folder/files it came from (shown in logs and metadata)
    real: tuple[str, ...]
    fake: tuple[str, ...]

    @property
    def sentences(self) -> list[str]:
        return [*self.real, *self.fake]

    @property
    def labels(self) -> list[int]:
        return [0] * len(self.real) + [1] * len(self.fake)

    @property
    def digest(self) -> str:
        """Identifies the content (not the name): the key of the text-embedding cache."""
        blob = json.dumps({"real": self.real, "fake": self.fake}, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"name": self.name, "real": list(self.real), "fake": list(self.fake)}


def read_description_file(path: str | Path, cls: str = "") -> list[str]:
    """Sentences of one file: stripped, blank lines skipped, repeats kept."""
    path = Path(path)
    what = f"{cls} description file" if cls else "description file"
    if not path.is_file():
        raise DataError(f"{what} not found: {path}. Give a text file with one sentence per line.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); save it as UTF-8, one sentence per line") from None
    lines = [line.strip() for line in text.splitlines()]
    sentences = [s for s in lines if s]
    if not sentences:
        raise DataError(f"{path}: no {cls + ' ' if cls else ''}descriptions (the file is empty or only blank lines); "
                        "each class needs at least one sentence")
    return sentences


def from_files(real: str | Path, fake: str | Path, name: str | None = None) -> Descriptions:
    """A set from a real file and a fake file (any names)."""
    r = read_description_file(real, "real")
    f = read_description_file(fake, "fake")
    both = sorted(set(r) & set(f))
    if both:
        raise DataError(f"the sentence {both[0]!r} is listed as both real ({real}) and fake ({fake}); "
                        f"{len(both)} such sentence(s) in all. A description must belong to one class.")
    return Descriptions(name=name or f"{Path(real).name}+{Path(fake).name}", real=tuple(r), fake=tuple(f))


def _from_folder(folder: Path) -> Descriptions:
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    found = {c: [p for p in files if c in p.stem.lower()] for c in CLASSES}
    for c in CLASSES:
        if len(found[c]) != 1:
            raise DataError(
                f"{folder}: expected exactly one .txt file with {c!r} in its name, found "
                f"{[p.name for p in found[c]] or 'none'} (files: {[p.name for p in files]}). "
                "A description folder holds one real and one fake file, e.g. real.txt and fake.txt.")
    return from_files(found["real"][0], found["fake"][0], name=str(folder))


def load_descriptions(spec: str | Path) -> Descriptions:
    """A thesis set name (1desc, 10desc, 550desc), a folder with one *real*.txt and one *fake*.txt,
    or "REAL.txt,FAKE.txt"."""
    spec_s = str(spec).strip()
    if spec_s in THESIS_SETS:
        root = thesis_dir()
        real, fake = (root / p for p in THESIS_SETS[spec_s])
        if not real.is_file() or not fake.is_file():
            raise DataError(f"the thesis description set {spec_s!r} is not at {root} "
                            f"(expected {THESIS_SETS[spec_s][0]} and {THESIS_SETS[spec_s][1]}); "
                            "set $DFDET_SHARED to the shared folder, or pass your own description files")
        return from_files(real, fake, name=spec_s)
    if "," in spec_s:
        real, fake = (s.strip() for s in spec_s.split(",", 1))
        return from_files(real, fake)
    path = Path(spec_s)
    if path.is_dir():
        return _from_folder(path)
    raise DataError(f"unknown description set {spec_s!r}: use one of {', '.join(THESIS_SETS)}, a folder holding "
                    "one *real*.txt and one *fake*.txt, or REAL.txt,FAKE.txt")


def check_lengths(desc: Descriptions, tokenizer) -> None:
    """Refuse sentences CLIP would truncate: the cut-off part would be silently ignored."""
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return  # HF tokenizers: truncation is their documented behaviour; nothing cheap to check
    for cls, sentences in zip(CLASSES, (desc.real, desc.fake)):
        for s in sentences:
            n = len(encode(s))
            if n > MAX_TOKENS:
                raise DataError(f"{desc.name}: the {cls} description {s[:60]!r}... has {n} tokens; CLIP reads at "
                                f"most {MAX_TOKENS}. Shorten it or split it into several lines.")
