"""Zero-shot scoring on a tiny CLIP (vision + text towers built in-process) against a hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfdet.checkpoint import save_checkpoint
from dfdet.inference import DetectorBank
from dfdet.methods import get_method, list_methods
from dfdet.model import build_model, trainable_state
from dfdet.text import zeroshot
from dfdet.text.descriptions import Descriptions
from dfdet.text.model import TextDetector, build_text_model, get_tokenizer
from dfdet.text.zeroshot import cached_text_embeddings, pool_class_logits


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models are faster on one thread; two threads on a shared, busy machine thrash."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# A real class with a repeated sentence: repeats must weigh in the mean, as in the thesis's 550desc set.
DESC = Descriptions("test", real=("The image of a person.", "A genuine face.", "The image of a person."),
                    fake=("The image of a deepfake.", "A face swapped by a neural network."))


@pytest.fixture(autouse=True)
def _fresh_cache():
    zeroshot.clear_memory_cache()
    yield
    zeroshot.clear_memory_cache()


def pixels(n=3, seed=0):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def hand_logits(clip, x, desc: Descriptions, top_k=None) -> torch.Tensor:
    """The thesis's score written out: scaled cosine to each sentence, class means (of the top k)."""
    m = clip.model
    tok = get_tokenizer(clip.config.model)
    with torch.no_grad():
        img = m.encode_image(x)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = m.encode_text(tok(desc.sentences))
        txt = txt / txt.norm(dim=-1, keepdim=True)
        sims = math.exp(m.logit_scale.item()) * img @ txt.T
    nr = len(desc.real)
    cols = []
    for part in (sims[:, :nr], sims[:, nr:]):
        if top_k:
            part = part.sort(dim=1, descending=True).values[:, :top_k]
        cols.append(part.mean(dim=1))
    return torch.stack(cols, dim=1)


def test_zero_shot_scores_equal_hand_computation(tiny_clip):
    model = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC)
    x = pixels()
    with torch.no_grad():
        logits = model(x)
    expected = hand_logits(tiny_clip, x, DESC)
    assert logits.shape == (3, 2)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(p, torch.softmax(expected, -1), rtol=1e-5, atol=1e-6)
    # the repeat counts: dropping it changes the real-class mean
    dedup = Descriptions("dedup", DESC.real[:2], DESC.fake)
    with torch.no_grad():
        assert not torch.allclose(build_text_model(tiny_clip, "zeroshot_1desc", descriptions=dedup)(x)[:, 0],
                                  logits[:, 0])


def test_registered_zero_shot_method_uses_thesis_set(tiny_clip, shared):
    model = build_model(tiny_clip, "zeroshot_10desc")  # the lead's entry point: imports dfdet.text
    assert isinstance(model, TextDetector)
    assert len(model.descriptions.real) == 10 and len(model.descriptions.fake) == 10
    x = pixels(2, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hand_logits(tiny_clip, x, model.descriptions), rtol=1e-5, atol=1e-5)
        emb = model.embed(x)
    assert emb.shape == (2, tiny_clip.model.text_projection.shape[1])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_per_class_top_k_all_equals_plain_mean_and_top_1_is_the_max():
    """The per_class option (not the thesis's default, see test_text_train for that): k highest of each class."""
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    plain = torch.stack([logits[:, :3].mean(1), logits[:, 3:].mean(1)], 1)

    def pool(k):
        return pool_class_logits(logits, labels, top_k=k, scope="per_class")

    torch.testing.assert_close(pool_class_logits(logits, labels), plain)
    torch.testing.assert_close(pool(4), plain)  # k >= every class size
    torch.testing.assert_close(pool(100), plain)
    torch.testing.assert_close(pool_class_logits(logits, labels, top_k=7), plain)  # thesis rule, k = all descriptions
    top1 = torch.stack([logits[:, :3].max(1).values, logits[:, 3:].max(1).values], 1)
    torch.testing.assert_close(pool(1), top1)
    top2_fake = logits[:, 3:].sort(1, descending=True).values[:, :2].mean(1)
    torch.testing.assert_close(pool(2)[:, 1], top2_fake)


def test_per_class_top_k_in_the_model_matches_hand(tiny_clip):
    x = pixels(2, seed=2)
    with torch.no_grad():
        all_ = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC, top_k=len(DESC.real),
                                top_k_scope="per_class")(x)
        top1 = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC, top_k=1, top_k_scope="per_class")(x)
    torch.testing.assert_close(all_, hand_logits(tiny_clip, x, DESC), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(top1, hand_logits(tiny_clip, x, DESC, top_k=1), rtol=1e-5, atol=1e-5)


def test_text_embeddings_are_computed_once_per_model_and_set(tiny_clip, monkeypatch):
    calls = []
    real_encode = tiny_clip.model.encode_text

    def counting(tokens, normalize=False):
        calls.append(len(tokens))
        return real_encode(tokens, normalize=normalize)

    monkeypatch.setattr(tiny_clip.model, "encode_text", counting)
    x = pixels(2)
    a = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC)
    b = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC)
    with torch.no_grad():
        a(x), a(x), b(x)
    assert calls == [4]  # 4 unique sentences (5 descriptions), encoded once for both models


def test_changed_text_weights_invalidate_the_cache(tiny_clip):
    model = build_text_model(tiny_clip, "zeroshot_1desc", descriptions=DESC, share=False)
    x = pixels(2)
    with torch.no_grad():
        before = model(x)
        g = torch.Generator().manual_seed(5)  # what a checkpoint overlay does: new values, in place
        model.clip.text_projection.copy_(torch.randn(model.clip.text_projection.shape, generator=g))
        after = model(x)
        tok = get_tokenizer(tiny_clip.config.model)
        txt = model.clip.encode_text(tok(DESC.sentences), normalize=True)
        img = model.embed(x)
        sims = model.logit_scale() * img @ txt.T
        expected = torch.stack([sims[:, :3].mean(1), sims[:, 3:].mean(1)], 1)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


def test_disk_cache_round_trip(tmp_path):
    key = ("ViT-L-14", "openai", "abc123")
    emb = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    calls = []

    def compute():
        calls.append(1)
        return emb

    first = cached_text_embeddings(key, compute, cache_dir=tmp_path)
    zeroshot.clear_memory_cache()
    second = cached_text_embeddings(key, compute, cache_dir=tmp_path)
    assert calls == [1] and len(list(tmp_path.glob("*.safetensors"))) == 1
    torch.testing.assert_close(first, second)
    # random-init weights are never cached on disk (their values depend on the open_clip version)
    cached_text_embeddings(("m", "random-init-seed0", "d"), compute, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_registry_has_text_methods_with_defaults():
    names = list_methods("text")
    assert {"zeroshot_1desc", "zeroshot_10desc", "zeroshot_550desc", "textguided_1desc",
            "textguided_10desc"} <= set(names)
    for n in names:
        spec = get_method(n)
        assert spec.trains in ("none", "encoders") and spec.defaults["descriptions"]
    assert get_method("textguided_1desc").defaults["train"]["lr"] == 6e-7
    assert get_method("textguided_10desc").defaults["train"]["lr"] == 8e-7
    assert not get_method("zeroshot_550desc").trainable


def test_bank_serves_zero_shot_untouched_by_ln_overlays(tiny_clip, tiny_cfg, tmp_path, shared):
    """The bank swaps LN tensors into the shared vision encoder; zero-shot must keep plain CLIP weights."""
    from dfdet.backbone import load_clip
    det = build_model(load_clip(tiny_cfg), "ln_tuning")
    with torch.no_grad():
        for p in det.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    save_checkpoint(tmp_path / "ln_tuning", trainable_state(det),
                    {"method": "ln_tuning", "backbone": {"model": tiny_cfg.model, "weights": tiny_clip.weights_id}})
    expected = torch.softmax(hand_logits(load_clip(tiny_cfg), pixels(2), load_zs_set()), -1)[:, 1].numpy()
    bank = DetectorBank(tiny_clip, tmp_path, methods=["ln_tuning", "zeroshot_1desc"])
    assert bank.ready == ["ln_tuning", "zeroshot_1desc"]
    x = pixels(2)
    bank.predict(x, ["ln_tuning"])
    p = bank.predict(x, ["zeroshot_1desc"])["zeroshot_1desc"]
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    feats = bank.embed(x, "zeroshot_1desc")
    np.testing.assert_allclose(bank.head_p_fake("zeroshot_1desc", feats), p, rtol=1e-5, atol=1e-6)


def load_zs_set() -> Descriptions:
    from dfdet.text.descriptions import load_descriptions
    return load_descriptions(get_method("zeroshot_1desc").defaults["descriptions"])
