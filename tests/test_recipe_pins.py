"""Each recipe element observed where training uses it, not in a helper called on its own (issue #23).

One short real `train()` of the tiny backbone is watched from outside: the learning rate of every
optimiser step, the optimiser object itself, the SLERP draws of every step, the weights at the end of
every epoch and the epoch the checkpoint kept. The expected values are written out here from the
reference code (yermandy/deepfake-detection @ 0b872f7, yermandy/GenD @ e03532d,
OhGreat/Text_guided_deepfake_detection @ ca520a6); the file:line of each is in docs/RECIPES.md, with
the one-line mutations of dfdet each test was seen to catch.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torch.optim.optimizer as optimizer_hooks
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

import dfdet.slerp as slerp_mod
import dfdet.train as train_mod
from dfdet.checkpoint import load_tensors, read_meta
from dfdet.config import BackboneConfig, TrainConfig
from dfdet.metrics import binary_metrics, video_level
from dfdet.model import build_model, trainable_state

EPOCHS, BATCH, LR, MIN_LR = 3, 16, 3e-3, 1e-3  # 48 training crops -> 3 steps per epoch, 9 in all
# What the validation "said" each epoch: frame-level mAP peaks at epoch 1, video-level at epoch 2 (after
# improving at epoch 1 too, so an average over improvements would show), and the last epoch is 3.
SCRIPTED = {1: {"video_map_macro": 0.6, "map_macro": 0.95}, 2: {"video_map_macro": 0.9, "map_macro": 0.5},
            3: {"video_map_macro": 0.7, "map_macro": 0.7}}


def _cfg(dfdc_manifest, out, **kw) -> TrainConfig:
    manifest, root = dfdc_manifest
    base = dict(method="ln_norm_slerp", backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                manifest=str(manifest), data_root=str(root), batch_size=BATCH, epochs=EPOCHS, lr=LR, min_lr=MIN_LR,
                out=str(out), device="cpu", augment="none")
    base.update(kw)
    return TrainConfig(**base)


def _watch(mp: pytest.MonkeyPatch, seen: dict, script: dict | None = None) -> list:
    """Hooks that record what training does; returns handles to remove."""
    seen.update(lrs=[], opts=[], slerp=[], labels=[], epoch_state=[], clipped=[], tf32=[], models=[])

    def pre_step(opt, args, kwargs):
        if seen["opts"] and opt is not seen["opts"][0]:
            return  # a later optimiser (the calibration's temperature fit), not training's
        seen["opts"].append(opt)
        seen["lrs"].append([g["lr"] for g in opt.param_groups])
    handle = optimizer_hooks.register_optimizer_step_pre_hook(pre_step)

    real_slerp, real_augment, real_validate = slerp_mod.slerp, train_mod.slerp_augment, train_mod.validate

    def slerp(x, y, t, *a, **k):
        seen["slerp"].append((x.detach().clone(), y.detach().clone(), torch.as_tensor(t).detach().clone()))
        return real_slerp(x, y, t, *a, **k)

    def slerp_augment(features, labels, *a, **k):
        seen["labels"].append(labels.clone())
        return real_augment(features, labels, *a, **k)

    def validate(model, *a, **k):
        m = real_validate(model, *a, **k)
        epoch = len(seen["epoch_state"]) + 1
        seen["epoch_state"].append({n: v.detach().clone() for n, v in trainable_state(model).items()})
        m.update((script or {}).get(epoch, {}))
        return m

    def build(clip, spec, *a, **k):
        model = build_model(clip, spec, *a, **k)
        seen["models"].append(model)
        return model

    mp.setattr(slerp_mod, "slerp", slerp)
    mp.setattr(train_mod, "slerp_augment", slerp_augment)
    mp.setattr(train_mod, "validate", validate)
    mp.setattr(train_mod, "build_model", build)
    mp.setattr(train_mod, "set_matmul_precision", lambda device: seen["tf32"].append(device))
    for name in ("clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_"):
        if hasattr(torch.nn.utils, name):
            mp.setattr(torch.nn.utils, name, lambda *a, _n=name, **k: seen["clipped"].append(_n))
    return [handle]


@pytest.fixture(scope="module")
def run(dfdc_manifest, tmp_path_factory):
    """One paper-method run (weight decay 0.05 so the two AdamW groups can be told apart), watched."""
    seen: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        handles = _watch(mp, seen, SCRIPTED)
        try:
            out = train_mod.train(_cfg(dfdc_manifest, tmp_path_factory.mktemp("pins") / "run", weight_decay=0.05))
        finally:
            for h in handles:
                h.remove()
    seen["out"] = out
    return seen


def _paper_cosine(k: int, total: int) -> float:
    """torch's CosineAnnealingLR closed form, as the reference steps it once per batch (T_max = epochs x batches)."""
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * k / total))


def test_every_steps_learning_rate_is_the_references_cosine(run):
    lrs = run["lrs"]
    assert len(lrs) == EPOCHS * 3  # one optimiser step per batch of 16 out of 48
    for k, groups in enumerate(lrs):
        assert groups == pytest.approx([_paper_cosine(k, 9)] * 2, rel=1e-12), k
    assert lrs[0][0] == pytest.approx(LR)  # starts at the peak
    assert lrs[4][0] == pytest.approx(MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * 4 / 9)))
    assert lrs[-1][0] == pytest.approx(MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * 8 / 9)))
    assert lrs[-1][0] < lrs[4][0] < lrs[0][0]


def test_the_optimiser_is_adamw_with_the_references_settings_and_groups(run):
    opt = run["opts"][0]
    assert all(o is opt for o in run["opts"])  # one optimiser for the whole run
    assert type(opt) is torch.optim.AdamW
    d = opt.defaults
    assert tuple(d["betas"]) == (0.9, 0.999) and d["eps"] == 1e-8 and not d["amsgrad"] and not d["maximize"]
    model = run["models"][0]
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert groups[0] == ["head.weight"]  # the only parameter neither a bias nor a norm's
    assert groups[1] == sorted(set(trainable) - {"head.weight"})
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all("ln" in n or n.endswith("bias") for n in groups[1])


def test_the_optimiser_takes_its_settings_from_the_config(dfdc_manifest, tmp_path):
    """The cached linear-probe path (frozen features, augment=none): another branch of the same loop."""
    seen: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        handles = _watch(mp, seen)
        try:
            train_mod.train(_cfg(dfdc_manifest, tmp_path / "lp", method="linear_probe", epochs=1, eps=1e-6,
                                 betas=(0.8, 0.9), weight_decay=0.01))
        finally:
            for h in handles:
                h.remove()
    opt = seen["opts"][0]
    assert (tuple(opt.defaults["betas"]), opt.defaults["eps"]) == ((0.8, 0.9), 1e-6)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert [g[0] for g in seen["lrs"]] == pytest.approx([_paper_cosine(k, 3) for k in range(3)], rel=1e-12)


def test_slerp_draws_t_uniform_on_0_1_and_partners_by_permutation_in_each_class(run):
    calls, labels = run["slerp"], run["labels"]
    assert len(calls) == EPOCHS * 3 and len(labels) == len(calls)  # once per training step
    t = torch.cat([c[2].flatten() for c in calls])
    assert t.numel() == EPOCHS * 3 * BATCH  # one t per feature
    assert 0 <= t.min() and t.max() <= 1
    assert t.min() < 0.05 and t.max() > 0.95  # the whole range, not U(0, 0.5) or a constant
    assert 0.4 < t.mean() < 0.6 and 0.22 < t.std() < 0.36  # U(0, 1): mean 1/2, sd 0.289
    fixed = 0
    for (x, y, _), lab in zip(calls, labels):
        partner = torch.cdist(y, x).argmin(1)
        assert torch.equal(y, x[partner])  # each partner is one of the batch's own features
        assert torch.equal(lab[partner], lab)  # of the same class
        for c in lab.unique():
            members = torch.nonzero(lab == c).flatten()
            assert sorted(partner[members].tolist()) == members.tolist()  # a permutation within the class
        fixed += int((partner == torch.arange(len(lab))).sum())
    assert fixed < 0.4 * t.numel()  # a random permutation, not the identity


def test_the_kept_epoch_is_the_best_video_level_map_and_its_weights_are_saved_as_they_were(run):
    meta = read_meta(run["out"])
    assert meta["best_epoch"] == 2  # video mAP best at 2; frame mAP would pick 1, the last epoch 3
    saved = load_tensors(run["out"])
    kept = run["epoch_state"][1]
    assert set(saved) == set(kept)
    for name, value in kept.items():  # the live weights of that epoch: no averaging (EMA/SWA) in between
        assert torch.equal(saved[name], value), name
    assert not torch.equal(kept["head.weight"], run["epoch_state"][0]["head.weight"])  # the epochs differ
    assert not torch.equal(kept["head.weight"], run["epoch_state"][-1]["head.weight"])


def test_no_gradient_clipping_and_tf32_is_set_for_the_training_device(run):
    assert run["clipped"] == []
    assert [d.type for d in run["tf32"]] == ["cpu"]
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        train_mod.set_matmul_precision(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"  # CPU: untouched
        train_mod.set_matmul_precision(torch.device("cuda"))
        assert torch.get_float32_matmul_precision() == "high"  # reference run.py:31
    finally:
        torch.set_float32_matmul_precision(before)


def test_gend_preset_trains_with_warm_up_then_cosine_restarts_like_torchs_schedulers(dfdc_manifest, tmp_path):
    """GenD.py:329-345: SequentialLR(LinearLR(min_lr/lr), CosineAnnealingWarmRestarts(T_0, T_mult=1))."""
    from dfdet.presets import preset_values
    values = preset_values("gend", "ln_norm")
    # a warm-up (3 steps) that is not a whole number of cycles (6 steps): restarts count from its end
    values.update(epochs=3, batch_size=BATCH, cycle_epochs=2.0, warmup_epochs=1.0, lr=LR, min_lr=MIN_LR, augment="none")
    seen: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        handles = _watch(mp, seen)
        try:
            train_mod.train(_cfg(dfdc_manifest, tmp_path / "gend", method="ln_norm", **values))
        finally:
            for h in handles:
                h.remove()
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=LR)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=MIN_LR / LR, total_iters=3)
    cyc = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=6, T_mult=1, eta_min=MIN_LR)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cyc], milestones=[3])
    expected = []
    for _ in range(9):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [g[0] for g in seen["lrs"]] == pytest.approx(expected, rel=1e-9)
    assert seen["slerp"] == []  # GenD never interpolates features


def test_gend_preset_is_gends_run():
    from dfdet.errors import DataError
    from dfdet.presets import preset_values
    v = preset_values("gend", "ln_norm")
    assert (v["batch_size"], v["epochs"], v["lr"], v["min_lr"], v["weight_decay"]) == (128, 30, 3e-4, 1e-5, 0.0)
    assert (v["lr_schedule"], v["cycle_epochs"], v["warmup_epochs"]) == ("cyclic", 10.0, 1.0)
    assert (v["align_weight"], v["uniform_weight"], v["augment"], v["val_limit"]) == (0.1, 0.5, "gend", 0)
    with pytest.raises(DataError, match="--method ln_norm"):
        preset_values("gend", "ln_norm_slerp")  # GenD has no SLERP


def test_gends_augmentation_blurs_one_image_in_ten_with_a_7_kernel():
    from dfdet.data.augment import build_augmentation
    ops = build_augmentation("gend").transform.transforms
    assert [type(t) for t in ops] == [T.RandomHorizontalFlip, T.RandomAffine, T.RandomApply, T.ColorJitter, T.JPEG]
    blur = ops[2]
    assert blur.p == 0.1 and len(blur.transforms) == 1
    assert tuple(blur.transforms[0].kernel_size) == (7, 7) and list(blur.transforms[0].sigma) == [0.1, 2.0]
    assert ops[0].p == 0.5 and list(ops[1].degrees) == [-10, 10] and list(ops[4].quality) == [40, 100]


@pytest.mark.parametrize("name", ["paper", "gend"])
def test_affine_interpolation_is_torchvisions_default_nearest(name):
    from dfdet.data.augment import build_augmentation
    affine = build_augmentation(name).transform.transforms[1]
    mode = getattr(affine.interpolation, "value", affine.interpolation)
    assert mode == InterpolationMode.NEAREST.value  # RandomAffine's default; the reference sets none
    assert affine.fill == 0
    assert affine.center is None


def test_uniformity_floor_binds_at_1e_6():
    from dfdet.slerp import uniformity_loss
    collapsed = torch.ones(6, 4)  # one point: mean exp(0) = 1, the loss's maximum (log 1 = 0), not its floor
    assert uniformity_loss(collapsed).item() == pytest.approx(0.0, abs=1e-7)
    apart = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # antipodal: exp(-t * 4)
    assert uniformity_loss(apart).item() == pytest.approx(-8.0, abs=1e-5)  # t = 2 never reaches the floor
    assert uniformity_loss(apart, t=5.0).item() == pytest.approx(math.log(1e-6), abs=1e-5)  # exp(-20) < 1e-6


def test_cross_entropy_has_no_label_smoothing():
    import types

    from dfdet.methods import get_method
    head = torch.nn.Linear(3, 2)
    model = types.SimpleNamespace(spec=get_method("ln_norm"), classify=head)
    z = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    y = torch.tensor([0, 1, 1])
    got = train_mod.head_loss(model, z, y, TrainConfig(), torch.Generator())
    logits = head(z)
    hand = -(logits.log_softmax(-1)[torch.arange(3), y]).mean()
    assert got.item() == pytest.approx(hand.item(), abs=1e-6)


def test_head_and_loss_run_under_bf16_autocast(tiny_clip):
    model = build_model(tiny_clip, "ln_norm_slerp")
    dtypes = []
    model.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    size = tiny_clip.model.visual.image_size
    px = torch.randn(4, 3, *(size if isinstance(size, tuple) else (size, size)))
    y = torch.tensor([0, 0, 1, 1])
    for precision, want in (("bf16", torch.bfloat16), ("fp32", torch.float32), ("auto", torch.float32)):
        step = train_mod.TrainStep(model, TrainConfig(precision=precision), torch.Generator().manual_seed(0),
                                   torch.device("cpu"))
        loss = step(px, y)
        assert dtypes[-1] == want, precision  # "auto" is bf16 on CUDA only
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_video_score_is_the_mean_of_its_frames():
    # skewed frames: mean and median rank the two videos in opposite orders
    val = pd.DataFrame({"dataset": ["D"] * 6, "source": ["real"] * 3 + ["fake"] * 3,
                        "video": ["a"] * 3 + ["b"] * 3})
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.9, 0.3, 0.35, 0.4])
    v = video_level(val.assign(label=y, p=p), "p").set_index("video")["p"]
    assert v.to_dict() == pytest.approx({"a": 0.4, "b": 0.35})  # (0.1 + 0.2 + 0.9) / 3, not the median 0.2
    m = train_mod.val_metrics(y, p, val)
    assert m["video_n"] == 2 and m["video_auroc"] == pytest.approx(0.0)  # by the mean, the real video ranks higher
    assert m["video_map_macro"] == pytest.approx(binary_metrics(np.array([0, 1]), np.array([0.4, 0.35]))["map_macro"])


def test_f1_macro_is_the_references_argmax_macro_f1_and_a_tie_is_real():
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.random(400), 1)  # many exact 0.5s
    m = binary_metrics(y, s)
    ref = f1_score(y, np.stack([1 - s, s], 1).argmax(1), average="macro")  # src/model/dfdet.py:378,384
    assert m["f1_macro"] == pytest.approx(ref)
    assert m["f1_fake"] == pytest.approx(f1_score(y, (s >= 0.5).astype(int))) and m["f1"] == m["f1_fake"]
    tie = binary_metrics(np.array([0, 1]), np.array([0.5, 0.9]))
    assert tie["f1_macro"] == 1.0  # p = 0.5 is real (argmax takes the first column)
    assert binary_metrics(np.array([0, 1]), np.array([0.5, 0.9]), 0.7)["f1_macro"] == 1.0  # independent of threshold


def _reference_subset(paths: list[str], limit: int) -> list[str]:
    """The reference's limit_files (src/dataset/deepfake.py:97-147), written out from its description."""
    files = sorted(set(paths))
    folder = {f: f[: f.rfind("/") + 1] for f in files}
    videos = sorted(set(folder.values()))
    np.random.RandomState(42).shuffle(videos)
    out: list[str] = []
    for v in videos:
        out += [f for f in files if folder[f] == v]
        if len(out) >= limit:
            break
    return out[:limit]


def test_validation_subset_is_the_references_whole_videos_in_seed_42_order():
    from dfdet.data.dataset import reference_val_subset
    rng = np.random.default_rng(0)
    rows = [(f"{d}/{s}/v{v:02d}/{f:03d}.png", int(s == "fake"))
            for d in ("CDF", "FF") for s in ("real", "fake") for v in range(12) for f in range(rng.integers(1, 9))]
    df = pd.DataFrame(rows, columns=["path", "label"]).sample(frac=1, random_state=1)
    for limit in (1, 37, 100):
        got = reference_val_subset(df, limit)["path"].tolist()
        assert got == _reference_subset(df["path"].tolist(), limit), limit
    assert reference_val_subset(df, 0) is df and reference_val_subset(df, 10 ** 6) is df
    assert TrainConfig().val_limit == 16384  # run.py:115-117


def test_training_validates_on_the_subset(dfdc_manifest):
    manifest, root = dfdc_manifest
    _, val_df, _ = train_mod.load_splits(TrainConfig(manifest=str(manifest), data_root=str(root), val_limit=5))
    full = pd.read_csv(manifest)
    full = full[full["split"] == "val"]
    assert val_df["path"].tolist() == _reference_subset(full["path"].tolist(), 5)
    _, whole, _ = train_mod.load_splits(TrainConfig(manifest=str(manifest), data_root=str(root), val_limit=0))
    assert len(whole) == len(full)


def test_truncated_images_load_as_in_the_reference(tmp_path, shared):
    from PIL import Image

    from dfdet.data.dataset import FaceDataset
    src = next((shared / "datasets").rglob("*.png"))
    data = src.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: int(len(data) * 0.7)])
    ds = FaceDataset(pd.DataFrame({"path": ["cut.png"], "label": [1]}), tmp_path,
                     lambda im: torch.from_numpy(np.array(im)))
    pixels, label, _ = ds[0]
    assert pixels.shape[:2] == Image.open(src).size[::-1] and int(label) == 1


def test_architecture_is_ln_tuning_on_pre_projection_cls_and_a_1024_to_2_head(vitl_clip, tiny_clip):
    model = build_model(vitl_clip, "ln_tuning")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    norms = {f"backbone.visual.{n}.{w}" for n, m in model.backbone.visual.named_modules()
             if isinstance(m, torch.nn.LayerNorm) for w in ("weight", "bias")}
    assert trainable == norms | {"head.weight", "head.bias"}
    assert len(norms) == 2 * (2 + 2 * 24)  # ln_pre, ln_post and ln_1/ln_2 of the 24 blocks
    assert (model.head.in_features, model.head.out_features) == (1024, 2)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 104_450
    small = build_model(tiny_clip, "ln_tuning").eval()
    size = tiny_clip.model.visual.image_size
    px = torch.randn(2, 3, *(size if isinstance(size, tuple) else (size, size)))
    with torch.no_grad():
        z = small.embed(px)
        assert z.shape[-1] == small.backbone.width  # no projection to the joint space
        assert torch.allclose(z @ tiny_clip.model.visual.proj, tiny_clip.model.encode_image(px), atol=1e-5)


def test_thesis_scorer_takes_top_k_over_all_descriptions_by_default(tiny_clip):
    from dfdet.text.descriptions import Descriptions
    from dfdet.text.model import build_text_model
    from dfdet.text.train import TextTrainConfig
    from dfdet.text.zeroshot import pool_class_logits
    desc = Descriptions(name="pins", real=("a real face", "a genuine photo", "an authentic person"),
                        fake=("a fake face", "a deepfake", "a forged person"))
    model = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=desc, top_k=3)
    torch.manual_seed(0)
    feats = torch.randn(32, tiny_clip.model.visual.output_dim)
    with torch.no_grad():
        logits = model.description_logits(feats)
        got = model.classify(feats)
        every = pool_class_logits(logits, model.desc_labels, 3, scope="all")
        per_class = pool_class_logits(logits, model.desc_labels, 3, scope="per_class")
    assert torch.equal(got, every) and not torch.equal(every, per_class)
    assert TextTrainConfig().top_k_scope == "all"


def test_thesis_runs_in_fp32_with_its_example_schedule_unless_asked():
    from dfdet.text.train import TextTrainConfig
    c = TextTrainConfig()
    assert c.precision == "fp32"  # options.py:25 --mixed_precision '32'
    assert c.scheduler is True  # example_scripts/example_finetune.sh:32 --use_scheduler
    assert (c.betas, c.eps, c.weight_decay) == ((0.9, 0.98), 1e-6, 0.2)


def test_thesis_without_its_scheduler_trains_at_a_constant_rate(dfdc_manifest, tmp_path):
    """lightning_model.py:127-128: no --use_scheduler, the bare optimiser, so every step runs at lr."""
    from test_text_train import tiny_train_cfg

    from dfdet.text.train import train_textguided
    lrs: list = []
    handle = optimizer_hooks.register_optimizer_step_pre_hook(
        lambda opt, a, k: lrs.append(opt.param_groups[0]["lr"]) if type(opt) is torch.optim.AdamW else None)
    try:
        train_textguided(tiny_train_cfg(dfdc_manifest, tmp_path / "flat", scheduler=False, epochs=1, batch_size=2))
    finally:
        handle.remove()
    assert len(lrs) > 1 and lrs == [3e-4] * len(lrs)  # with the scheduler, step 0 would be min_lr (warm-up)
