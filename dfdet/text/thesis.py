"""Numbers reported by the companion thesis, for display next to (never instead of) our results.

Source: "Text guided face forgery detection", master thesis, Leiden University, 2023. Its
text-guided model with one description per class (1desc), both CLIP encoders fine-tuned on
FaceForensics++, evaluated cross-dataset. These are the thesis's numbers, not measured by dfdet.
"""
from __future__ import annotations

THESIS_TITLE = "Text guided face forgery detection (master thesis, Leiden University, 2023)"

# method -> dataset -> AUROC in percent, as reported by the thesis (not reproduced here).
THESIS_REPORTED_AUROC: dict[str, dict[str, float]] = {
    "textguided_1desc": {"FF++": 98.68, "Celeb-DF": 86.68, "DFDC": 79.09},
}
