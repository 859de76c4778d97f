"""How sure: an operating threshold, a temperature and an "uncertain" band, all fitted on validation.

0.5 is an arbitrary cut for p_fake. At the end of training each method chooses its own threshold
on the validation split (never test) by a configurable rule, fits temperature scaling there, and
derives an "uncertain" band by class-conditional split-conformal prediction; all three go into the
checkpoint's dfdet.json with the rule that made them. Evaluation then reports, per method and
test set, TPR at 1%/5% FPR, ECE, reliability bins, and how far the validation threshold drifts.

Written here rather than with a library: netcal (temperature scaling) pulls pyro, gpytorch and
tensorboard for what is a one-parameter fit; crepes (conformal) returns prediction sets per object,
while the band must be two numbers stored in JSON, i.e. one quantile per class.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

RULES = ("eer", "fpr", "balanced")
DEFAULT_THRESHOLD = 0.5  # what a checkpoint without calibration uses (and says so)
RELIABILITY_BINS = 10  # equal-width bins of p_fake for ECE and the reliability diagram


@dataclass
class CalibrationConfig:
    rule: str = "eer"  # threshold rule on validation: "eer", "fpr" (at target_fpr) or "balanced" (best balanced acc)
    target_fpr: float = 0.05  # rule "fpr": the largest false-positive rate allowed on validation's reals
    alpha: float = 0.1  # conformal miscoverage: the band keeps each class's 1 - alpha coverage


@dataclass
class Calibration:
    """What a checkpoint stores under "calibration" (all p values are the model's raw p_fake)."""
    rule: str  # how the threshold was chosen
    threshold: float  # verdict "fake" when p_fake >= threshold
    temperature: float  # calibrated p_fake = sigmoid(logit(p_fake) / temperature)
    band: tuple[float, float]  # p_fake inside [lo, hi] is "uncertain": conformal sets hold both classes (or none)
    alpha: float  # miscoverage the band was made for
    split: str = "val"  # the manifest split it was fitted on
    n: int = 0  # rows it was fitted on
    target_fpr: float | None = None  # rule "fpr" only

    def to_meta(self) -> dict:
        d = asdict(self)
        d["band"] = [round(float(v), 6) for v in self.band]
        d["band_width"] = round(float(self.band[1] - self.band[0]), 6)
        return d

    @classmethod
    def from_meta(cls, meta: dict | None) -> "Calibration | None":
        """The checkpoint's calibration, or None when absent or malformed (a hostile dfdet.json cannot
        move a verdict outside [0, 1] or crash a view; read_meta refuses such a checkpoint first)."""
        c = (meta or {}).get("calibration")
        if not isinstance(c, dict) or calibration_problem(c):
            return None
        lo, hi = (float(v) for v in c["band"])
        target = c.get("target_fpr")
        return cls(rule=str(c.get("rule", "?")), threshold=float(c["threshold"]), temperature=float(c["temperature"]),
                   band=(lo, hi), alpha=float(c.get("alpha", 0.1)), split=str(c.get("split", "val")),
                   n=int(c.get("n", 0) or 0), target_fpr=None if target is None else float(target))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def calibration_problem(c) -> str:
    """'' if a dfdet.json "calibration" value is well formed, else what is wrong with it (one line).
    Every field is checked, so no reader of a checkpoint meets a value it cannot use."""
    if not isinstance(c, dict):
        return f"must be a JSON object, found {type(c).__name__}"
    for key in ("threshold", "temperature", "band"):
        if key not in c:
            return f"lacks {key!r}"
    checks = {
        "threshold": lambda v: _number(v) and 0 <= v <= 1,
        "temperature": lambda v: _number(v) and v > 0,
        "band": lambda v: (isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v)
                           and 0 <= v[0] <= v[1] <= 1),
        "band_width": lambda v: _number(v) and 0 <= v <= 1,
        "alpha": lambda v: _number(v) and 0 < v < 1,
        "n": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "rule": lambda v: v in RULES or (isinstance(v, str) and v.startswith("none: ") and len(v) <= 80),
        "split": lambda v: isinstance(v, str) and 0 < len(v) <= 40,
        "target_fpr": lambda v: v is None or (_number(v) and 0 <= v <= 1),
    }
    wants = {"threshold": "a number in [0, 1]", "temperature": "a finite number above 0",
             "band": "[lo, hi] with 0 <= lo <= hi <= 1", "band_width": "a number in [0, 1]",
             "alpha": "a number between 0 and 1", "n": "a whole number >= 0", "rule": f"one of {', '.join(RULES)} (or 'none: why')",
             "split": "a split name", "target_fpr": "a number in [0, 1] or null"}
    for key, ok in checks.items():
        if key in c and not ok(c[key]):
            import json
            return f"{key!r} must be {wants[key]}, found {json.dumps(c[key], default=str)[:40]}"
    unknown = sorted(set(c) - set(checks))
    if unknown:
        return f"has unknown field(s) {unknown[:3]}"
    return ""


def threshold_of(meta: dict | None) -> float:
    cal = Calibration.from_meta(meta)
    return cal.threshold if cal else DEFAULT_THRESHOLD


def verdict(p: float, cal: Calibration | None) -> str:
    """'fake' / 'real' at the method's own threshold; 'uncertain' inside its conformal band."""
    if cal is None:
        return "fake" if p >= DEFAULT_THRESHOLD else "real"
    lo, hi = cal.band
    if lo <= p <= hi and hi > lo:
        return "uncertain"
    return "fake" if p >= cal.threshold else "real"


# -- choosing the threshold -------------------------------------------------------------------

def _roc(y: np.ndarray, p: np.ndarray):
    from .metrics import roc_curve
    return roc_curve(y, p)


def choose_threshold(y: np.ndarray, p: np.ndarray, rule: str = "eer", target_fpr: float = 0.05) -> float:
    """A p_fake threshold from labelled scores (validation only)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}")
    if y.min() == y.max():
        raise ValueError("a threshold needs both real and fake validation rows")
    fpr, tpr, thr = _roc(y, p)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]  # drop the (0, 0) point at +inf: thresholds are real scores
    if rule == "eer":
        i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    elif rule == "balanced":
        i = int(np.argmax(tpr - fpr))
    else:
        ok = np.nonzero(fpr <= target_fpr)[0]
        if len(ok) == 0:  # even the highest score lets too many reals through: call nothing fake below it
            return float(np.nextafter(p.max(), np.inf))
        i = int(ok[-1])
    return float(thr[i])


# -- temperature scaling ----------------------------------------------------------------------

def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """T minimising validation NLL of sigmoid(logit(p) / T) (Guo et al. 2017), by LBFGS on log T."""
    import torch
    z = torch.as_tensor(_logit(p), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(y, dtype=np.float64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), t)
        loss.backward()
        return loss
    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 1e-2, 1e2))


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    return 1 / (1 + np.exp(-_logit(p) / temperature))


# -- conformal band ---------------------------------------------------------------------------

def _conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))-th smallest score; +inf when n is too small for that coverage."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha))
    return float(np.sort(scores)[k - 1]) if k <= n else math.inf


def conformal_band(y: np.ndarray, p: np.ndarray, alpha: float = 0.1) -> tuple[float, float]:
    """[lo, hi] of p_fake where the class-conditional (Mondrian) split-conformal set is not one class.

    Nonconformity is 1 - p for fakes and p for reals; "fake" is in the set when p >= lo, "real" when
    p <= hi, each with coverage >= 1 - alpha for its class on exchangeable data.
    """
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    lo = max(0.0, 1 - _conformal_quantile(1 - p[y == 1], alpha))
    hi = min(1.0, _conformal_quantile(p[y == 0], alpha))
    return (min(lo, hi), max(lo, hi))


def calibrate(y: np.ndarray, p: np.ndarray, cfg: CalibrationConfig | None = None, split: str = "val") -> Calibration:
    """Threshold, temperature and band from one labelled split's p_fake."""
    cfg = cfg or CalibrationConfig()
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():  # nothing to choose a threshold from: say so, never lose the checkpoint
        return Calibration(rule=f"none: the {split} split holds one class (0.5 kept)", threshold=DEFAULT_THRESHOLD,
                           temperature=1.0, band=(0.0, 0.0), alpha=cfg.alpha, split=split, n=int(len(y)))
    return Calibration(rule=cfg.rule, threshold=choose_threshold(y, p, cfg.rule, cfg.target_fpr),
                       temperature=fit_temperature(y, p), band=conformal_band(y, p, cfg.alpha), alpha=cfg.alpha,
                       split=split, n=int(len(y)), target_fpr=cfg.target_fpr if cfg.rule == "fpr" else None)


# -- evaluation metrics -----------------------------------------------------------------------

def reliability(y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Equal-width bins of p_fake: count, mean p_fake and share of fakes per bin, and the ECE
    (sum over bins of count/N * |mean p - share of fakes|). Empty bins have None."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, frac = sum_p / count, sum_y / count
    ece = float(np.sum(count[count > 0] / max(len(p), 1) * np.abs(mean_p - frac)[count > 0]))
    return {"edges": edges.round(6).tolist(), "count": count.tolist(),
            "mean_p": [None if c == 0 else round(float(v), 6) for c, v in zip(count, mean_p)],
            "frac_fake": [None if c == 0 else round(float(v), 6) for c, v in zip(count, frac)], "ece": round(ece, 6)}


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, fpr_max: float) -> float:
    """The best TPR among thresholds whose FPR is at most fpr_max."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = _roc(y, p)
    return float(tpr[fpr <= fpr_max + 1e-12].max())


def operating_metrics(y: np.ndarray, p: np.ndarray, cal: Calibration | None) -> dict:
    """What evaluation adds per method x test set: TPR at 1%/5% FPR, ECE (raw and after temperature),
    and, against the validation calibration, the threshold this set would pick by the same rule
    (drift = that minus the validation threshold), the rates at the validation threshold, and the
    share of rows in the uncertain band."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    out = {"tpr_at_fpr_1": tpr_at_fpr(y, p, 0.01), "tpr_at_fpr_5": tpr_at_fpr(y, p, 0.05),
           "ece": reliability(y, p)["ece"]}
    if cal is None:
        return out
    pred = p >= cal.threshold
    reals, fakes = y == 0, y == 1
    out.update({
        "threshold": cal.threshold, "threshold_rule": cal.rule,
        "ece_calibrated": reliability(y, apply_temperature(p, cal.temperature))["ece"],
        "fpr_at_threshold": float(pred[reals].mean()) if reals.any() else float("nan"),
        "tpr_at_threshold": float(pred[fakes].mean()) if fakes.any() else float("nan"),
        "uncertain_share": float(np.mean((p >= cal.band[0]) & (p <= cal.band[1]))) if cal.band[1] > cal.band[0]
        else 0.0,
    })
    if reals.any() and fakes.any():
        own = choose_threshold(y, p, cal.rule, cal.target_fpr or 0.05)
        out["threshold_here"] = own
        out["threshold_drift"] = own - cal.threshold
    return out


def add_operating_metrics(records: list[dict], rocs: list[dict], preds, cals: dict[str, Calibration | None],
                          prefix: str = "p_fake__") -> None:
    """Adds operating_metrics to every whole-dataset record (source "*") of metrics.json, and the
    reliability bins (with the method's threshold) to the matching roc.json record, at both levels."""
    from .metrics import video_level
    rec_at = {(r["method"], r["dataset"], r["level"]): r for r in records if r.get("source") == "*"}
    roc_at = {(r["method"], r["dataset"], r["level"]): r for r in rocs}
    for method, cal in cals.items():
        col = prefix + method
        for level in ("frame", "video"):
            table = preds if level == "frame" else video_level(preds, col)
            for dataset, dd in table.groupby("dataset", sort=True):
                y, p = dd["label"].to_numpy(), dd[col].to_numpy(dtype=np.float64)
                key = (method, dataset, level)
                if key in rec_at:
                    m = operating_metrics(y, p, cal)
                    rec_at[key].update({k: None if isinstance(v, float) and not math.isfinite(v) else v
                                        for k, v in m.items()})  # one-class sets: null, not NaN, in JSON
                if key in roc_at:
                    roc_at[key]["reliability"] = reliability(y, p)
                    roc_at[key]["calibrated_threshold"] = cal.threshold if cal else None
