"""The paired contrastive loss, its schedule, and text-guided training on real DFDC crops (tiny CLIP)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from dfdet.backbone import load_clip
from dfdet.checkpoint import load_tensors, read_meta
from dfdet.cli import main
from dfdet.config import BackboneConfig
from dfdet.data.dataset import FaceDataset
from dfdet.data.manifest import read_manifest, scan_folder, write_manifest
from dfdet.errors import DataError
from dfdet.inference import DetectorBank
from dfdet.methods import get_method
from dfdet.text import TextTrainConfig, load_text_checkpoint, train_textguided
from dfdet.text.model import build_text_model
from dfdet.text.textguided import lr_at, make_pairs, paired_clip_loss, sample_descriptions, should_stop
from dfdet.text.thesis import THESIS_REPORTED_AUROC


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models are faster on one thread; two threads on a shared, busy machine thrash."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def log_softmax_entry(row: list[float], i: int) -> float:
    return row[i] - math.log(sum(math.exp(v) for v in row))


def test_paired_loss_equals_hand_value_for_2x2():
    # unit vectors in 2-D, so every cosine is written out below
    real_img = torch.tensor([[1.0, 0.0]])
    fake_img = torch.tensor([[0.6, 0.8]])
    real_txt = torch.tensor([[0.8, 0.6]])
    fake_txt = torch.tensor([[0.0, 1.0]])
    s = 2.0
    # rows = images (real, fake), columns = descriptions (real, fake)
    L = [[s * 0.8, s * 0.0],
         [s * (0.6 * 0.8 + 0.8 * 0.6), s * 0.8]]
    l_img = -(log_softmax_entry(L[0], 0) + log_softmax_entry(L[1], 1)) / 2
    cols = [[L[0][0], L[1][0]], [L[0][1], L[1][1]]]
    l_txt = -(log_softmax_entry(cols[0], 0) + log_softmax_entry(cols[1], 1)) / 2
    expected = (l_img + l_txt) / 2
    got = paired_clip_loss(real_img, fake_img, real_txt, fake_txt, s)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.5249, abs=1e-4)  # the number itself, for a reader checking by hand


def test_paired_loss_averages_pairs_and_ignores_other_pairs():
    g = torch.Generator().manual_seed(0)
    r, f, tr, tf = (torch.randn(3, 8, generator=g) for _ in range(4))
    per_pair = [paired_clip_loss(r[i:i + 1], f[i:i + 1], tr[i:i + 1], tf[i:i + 1], 10.0) for i in range(3)]
    torch.testing.assert_close(paired_clip_loss(r, f, tr, tf, 10.0), torch.stack(per_pair).mean())
    # a shared description ([1, D]) is the same as repeating it for every pair
    torch.testing.assert_close(paired_clip_loss(r, f, tr[:1], tf[:1], 10.0),
                               paired_clip_loss(r, f, tr[:1].expand(3, 8), tf[:1].expand(3, 8), 10.0))
    # scaling vectors changes nothing: only cosines count
    torch.testing.assert_close(paired_clip_loss(3 * r, f, tr, 0.5 * tf, 10.0), paired_clip_loss(r, f, tr, tf, 10.0))


def test_lr_schedule_rewarms_from_min_lr_every_cycle():
    """The thesis's CosineAnnealingWarmupRestarts (src/utils/warmup_cosine_scheduler.py:55-64)."""
    peak, warm, cycle = 6e-7, 10, 100
    assert lr_at(0, peak, warm, cycle) == 0.0  # the first step runs at min_lr
    assert lr_at(5, peak, warm, cycle) == pytest.approx(peak / 2)  # linear warm-up
    assert lr_at(10, peak, warm, cycle) == pytest.approx(peak)  # cosine starts at the peak
    assert lr_at(55, peak, warm, cycle) == pytest.approx(peak / 2)  # half-way down the cosine
    assert lr_at(99, peak, warm, cycle) < peak * 0.001
    assert lr_at(100, peak, warm, cycle, min_lr=1e-8) == pytest.approx(1e-8)  # second cycle: back to min_lr ...
    assert lr_at(105, peak, warm, cycle) == pytest.approx(peak / 4)  # ... and warms up again, to the halved peak
    assert lr_at(110, peak, warm, cycle) == pytest.approx(peak / 2)
    assert lr_at(210, peak, warm, cycle) == pytest.approx(peak / 4)


def test_early_stopping_is_patience_on_the_validation_loss():
    """Lightning EarlyStopping(monitor val loss, mode min, min_delta 0) as in the thesis's main.py:109-115."""
    assert not should_stop([1.0, 0.9, 0.8], patience=3)
    assert not should_stop([1.0, 1.1, 1.2], patience=3)  # two epochs without a better loss
    assert should_stop([1.0, 1.1, 1.2, 1.3], patience=3)  # three
    assert not should_stop([1.0, 1.1, 1.2, 0.99], patience=3)  # a better loss resets the count
    assert should_stop([1.0, 0.97, 0.96, 0.98], patience=3, min_delta=0.05)  # none beats 1.0 by more than 0.05
    assert not should_stop([1.0, 1.1, 1.2, 1.3], patience=0)  # 0 disables it
    assert TextTrainConfig().early_stop_patience == 5  # the thesis's --early_stop default (src/utils/options.py:24)


def test_top_k_is_taken_over_all_descriptions_then_split_by_class():
    from dfdet.text.zeroshot import pool_class_logits
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    logits = torch.tensor([[9.0, 8.0, 1.0, 7.0, 2.0, 0.0]])
    # top-3 over all = 9 (real), 8 (real), 7 (fake): real mean 8.5, fake mean 7 (thesis lightning_model.py:295-301)
    assert pool_class_logits(logits, labels, 3).tolist() == [[8.5, 7.0]]
    assert pool_class_logits(logits, labels, 3, scope="per_class").tolist() == [[6.0, 3.0]]
    # a class absent from the top-k gets -inf (the thesis divides 0 by 0)
    assert pool_class_logits(logits, labels, 2).tolist() == [[8.5, float("-inf")]]


def test_pairing_covers_the_larger_class_and_is_seeded():
    real, fake = list(range(3)), list(range(10, 17))
    pairs = make_pairs(real, fake, torch.Generator().manual_seed(1))
    assert len(pairs) == 7 and sorted(f for _, f in pairs) == fake
    assert all(r in real for r, _ in pairs) and set(r for r, _ in pairs) == set(real)
    assert pairs == make_pairs(real, fake, torch.Generator().manual_seed(1))
    assert pairs != make_pairs(real, fake, torch.Generator().manual_seed(2))


def test_description_sampling():
    labels = [0, 0, 0, 1, 1]
    g = torch.Generator().manual_seed(0)
    r, f = sample_descriptions(labels, 50, g)
    assert set(r.tolist()) == {0, 1, 2} and set(f.tolist()) == {3, 4}  # per pair: all of them get drawn
    r, f = sample_descriptions(labels, 50, g, per_pair=False)
    assert len(set(r.tolist())) == 1 and len(set(f.tolist())) == 1 and len(r) == 50
    r, f = sample_descriptions([0, 1], 4, g)  # 1desc: always the same pair of sentences
    assert r.tolist() == [0] * 4 and f.tolist() == [1] * 4


@pytest.fixture(scope="module")
def dfdc_manifest(shared, tmp_path_factory):
    """8 real + 8 fake DFDC crops for training, 4 + 4 for validation; paths stay in ../shared."""
    root = shared / "datasets"
    df = scan_folder(root)
    df = df[df["dataset"] == "DFDC"]
    parts = []
    for label in (0, 1):
        part = df[df["label"] == label].head(12).copy()
        part["split"] = ["train"] * 8 + ["val"] * 4
        parts.append(part)
    path = tmp_path_factory.mktemp("text_manifest") / "dfdc_small.csv"
    write_manifest(pd.concat(parts), path)
    return path, root


def tiny_train_cfg(dfdc_manifest, out, **kw) -> TextTrainConfig:
    path, root = dfdc_manifest
    base = dict(method="textguided_1desc", backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                manifest=str(path), data_root=str(root), batch_size=4, epochs=8, lr=3e-4, warmup_steps=1,
                cycle_epochs=8, early_stop_patience=0, grad_accum=1, device="cpu",
                out=str(out))  # lr far above the thesis's 6e-7
    base.update(kw)
    return TextTrainConfig(**base)


def train_pair_loss(model, cfg: TextTrainConfig) -> float:
    """The paired loss on all 8 training pairs (fixed pairing), with the model in eval mode."""
    df = read_manifest(cfg.manifest, cfg.data_root)
    df = df[df["split"] == "train"]
    faces = FaceDataset(df, cfg.data_root, load_clip(cfg.backbone).preprocess)
    real = torch.stack([faces[i][0] for i in range(len(df)) if faces.labels[i] == 0])
    fake = torch.stack([faces[i][0] for i in range(len(df)) if faces.labels[i] == 1])
    model.eval()
    with torch.no_grad():
        t = model.text_features()
        return paired_clip_loss(model.embed(real), model.embed(fake), t[0:1], t[1:2], model.logit_scale()).item()


@pytest.fixture(scope="module")
def trained(dfdc_manifest, tmp_path_factory, shared):
    cfg = tiny_train_cfg(dfdc_manifest, tmp_path_factory.mktemp("tg") / "textguided_1desc")
    return cfg, train_textguided(cfg)


def test_training_on_real_crops_lowers_the_paired_loss(trained):
    cfg, folder = trained
    clip = load_clip(cfg.backbone)
    before = train_pair_loss(build_text_model(clip, "textguided_1desc"), cfg)
    after = train_pair_loss(load_text_checkpoint(folder, clip), cfg)
    print(f"paired loss on the training pairs: before {before:.4f}, after {after:.4f}")
    assert math.isfinite(before) and after < before - 0.1, (before, after)
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[-1]["train_loss"] < log[0]["train_loss"]


def test_checkpoint_holds_both_encoders_and_loads_by_name(trained):
    cfg, folder = trained
    meta = read_meta(folder)
    assert meta["method"] == "textguided_1desc"
    assert meta["backbone"] == {"model": "dfdet-tiny-vit", "weights": "random-init-seed0"}
    assert {"config", "trainable_params", "val_metrics", "descriptions"} <= set(meta)
    assert meta["descriptions"]["real"] == ["The image of a person."]
    assert meta["config"]["weight_decay"] == 0.2 and meta["config"]["betas"] == [0.9, 0.98]
    tensors = load_tensors(folder)
    model = build_text_model(load_clip(cfg.backbone), "textguided_1desc")
    params = dict(model.named_parameters())
    expected = set(params)  # both towers and, as in the thesis (lightning_model.py:113-117), the temperature
    assert set(tensors) == expected and "clip.logit_scale" in tensors
    assert meta["trainable_params"] == sum(params[n].numel() for n in expected)
    assert not torch.equal(tensors["clip.logit_scale"], params["clip.logit_scale"].detach())  # it was trained
    assert any(k.startswith("clip.visual.") for k in tensors) and "clip.token_embedding.weight" in tensors


def test_bank_and_evaluate_serve_the_trained_model(trained, tmp_path):
    from dfdet.evaluate import EvalConfig, evaluate
    from dfdet.artifacts import load_run
    cfg, folder = trained
    clip = load_clip(cfg.backbone)
    bank = DetectorBank(clip, folder.parent, methods=["textguided_1desc", "zeroshot_1desc"])
    assert bank.entries["textguided_1desc"].status == "ready", bank.entries["textguided_1desc"].message
    assert set(bank.ready) == {"textguided_1desc", "zeroshot_1desc"}
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    direct = torch.softmax(load_text_checkpoint(folder, load_clip(cfg.backbone))(x), -1)[:, 1].detach().numpy()
    got = bank.predict(x)
    assert got["textguided_1desc"] == pytest.approx(direct, abs=1e-5)
    assert abs(got["textguided_1desc"] - got["zeroshot_1desc"]).max() > 1e-3  # training changed the scores
    run = evaluate(EvalConfig(manifest=cfg.manifest, data_root=cfg.data_root, split="val",
                              checkpoints=str(folder.parent), methods=["textguided_1desc", "zeroshot_1desc"],
                              backbone=cfg.backbone, batch_size=8, out=str(tmp_path / "run")), bank=bank)
    r = load_run(run)
    assert set(r.methods) == {"textguided_1desc", "zeroshot_1desc"}
    z, _ = r.embeddings("textguided_1desc")
    assert z.shape == (8, 32)


def test_frozen_text_variant_with_own_descriptions(dfdc_manifest, tmp_path, caplog):
    (tmp_path / "desc").mkdir()
    (tmp_path / "desc" / "real.txt").write_text("A photo of a real face.\nAn unedited portrait.\n")
    (tmp_path / "desc" / "fake.txt").write_text("A face-swapped video frame.\n")
    # max_steps 2: the first step runs at min_lr (0), as in the thesis's scheduler
    cfg = tiny_train_cfg(dfdc_manifest, tmp_path / "frozen", train_text=False, epochs=1, max_steps=2,
                         descriptions=str(tmp_path / "desc"))
    folder = train_textguided(cfg)
    assert "trains with" in caplog.text  # not the registered set: said once, at the start
    tensors = load_tensors(folder)
    assert tensors and all(k.startswith("clip.visual.") for k in tensors)
    tuned = load_text_checkpoint(folder, load_clip(cfg.backbone))
    assert tuned.descriptions.real == ("A photo of a real face.", "An unedited portrait.")
    base = build_text_model(load_clip(cfg.backbone), "textguided_1desc", descriptions=tuned.descriptions)
    torch.testing.assert_close(tuned.text_features(), base.text_features())
    assert not torch.equal(tuned.clip.visual.conv1.weight, base.clip.visual.conv1.weight)


def test_cli_train_runs_the_text_trainer(dfdc_manifest, tmp_path):
    from dfdet.train import trainer_for
    assert trainer_for("textguided_10desc") == (TextTrainConfig, train_textguided)
    path, root = dfdc_manifest
    out = tmp_path / "cli"
    code = main(["train", "--method", "textguided_10desc", "--manifest", str(path), "--data-root", str(root),
                 "--model", "dfdet-tiny-vit", "--pretrained", "none", "--device", "cpu", "--epochs", "1",
                 "--max-steps", "1", "--batch-size", "2", "--set", "checkpoint_dtype=bf16", "--out", str(out)])
    assert code == 0
    meta = read_meta(out)
    assert meta["method"] == "textguided_10desc"
    assert meta["config"]["lr"] == get_method("textguided_10desc").defaults["train"]["lr"] == 8e-7
    assert len(meta["descriptions"]["real"]) == 10
    assert all(t.dtype == torch.bfloat16 for t in load_tensors(out).values())


def test_one_description_pair_per_batch_and_four_micro_batches_per_step(dfdc_manifest, tmp_path, monkeypatch):
    """Thesis: get_labels() once per training_step (lightning_model.py:163), accumulate_grad_batches 4."""
    from dfdet.text import train as text_train
    calls = []
    real = text_train.sample_descriptions

    def record(labels, n, gen, per_pair=True):
        r, f = real(labels, n, gen, per_pair)
        calls.append((r.tolist(), f.tolist()))
        return r, f

    monkeypatch.setattr(text_train, "sample_descriptions", record)
    cfg = tiny_train_cfg(dfdc_manifest, tmp_path / "acc", method="textguided_10desc", descriptions="10desc",
                         batch_size=2, epochs=1, grad_accum=TextTrainConfig().grad_accum,
                         per_pair_descriptions=TextTrainConfig().per_pair_descriptions)
    assert cfg.grad_accum == 4
    folder = train_textguided(cfg)
    train_calls = calls[1:]  # the first draw is the fixed validation set's
    assert len(train_calls) == 4  # 8 pairs in micro-batches of 2
    assert all(len(r) == 2 and len(set(r)) == 1 and len(set(f)) == 1 for r, f in train_calls)  # one pair per batch
    assert read_meta(folder)["steps"] == 1  # 4 micro-batches, 4 per optimiser step


def test_trainer_refuses_non_text_methods(dfdc_manifest, tmp_path):
    with pytest.raises(DataError, match="not a trainable text method"):
        train_textguided(tiny_train_cfg(dfdc_manifest, tmp_path / "x", method="zeroshot_1desc"))


def test_thesis_numbers_are_labelled_as_the_thesis():
    assert THESIS_REPORTED_AUROC["textguided_1desc"] == {"FF++": 98.68, "Celeb-DF": 86.68, "DFDC": 79.09}
    get_method("textguided_1desc")  # keys are registry names


def test_vitl_checkpoint_size_is_the_full_encoders(vitl_clip):
    """The number the README quotes: text-guided checkpoints hold ~428M values (1.71 GB fp32) vs 104,450 for LN."""
    from dfdet.model import build_model, trainable_count
    from dfdet.text.train import set_trainable
    flags = {id(p): p.requires_grad for p in vitl_clip.model.parameters()}
    try:
        model = build_text_model(vitl_clip, "textguided_1desc", share=True)  # no 1.7 GB copy for counting
        both = set_trainable(model, train_text=True)
        image_only = set_trainable(model, train_text=False)
        ln = trainable_count(build_model(vitl_clip, "ln_tuning"))
    finally:
        for p in vitl_clip.model.parameters():
            p.requires_grad_(flags[id(p)])
    assert both == 427_616_512 + 1 and image_only == 303_966_208 and ln == 104_450  # +1: the trained logit_scale
    assert 1.70e9 < 4 * both < 1.72e9 and 0.85e9 < 2 * both < 0.86e9  # fp32 / bf16 bytes
    assert 4 * ln < 0.42e6
