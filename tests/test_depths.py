"""Layer depths from parameter names: numbered stacks, top-level blocks, user patterns."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.depths import assign_depths

BERT = [
    "embeddings.word_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.output.LayerNorm.bias",
    "encoder.layer.1.attention.self.query.weight",
    "encoder.layer.1.output.LayerNorm.bias",
    "pooler.dense.weight",
    "classifier.weight",
]


def test_bert_names_put_the_head_on_top_and_the_embeddings_lowest():
    layering = assign_depths(BERT)
    assert layering.rule == "stack"
    assert [layering.depth[name] for name in BERT] == [3, 3, 2, 2, 1, 1, 0, 0]
    assert layering.labels[1] == "encoder.layer.1"
    assert layering.labels[3] == "embeddings"
    assert layering.deepest == 3


@given(
    layers=st.integers(1, 12),
    prefix=st.sampled_from(["", "bert.", "0.model.", "model.decoder."]),
    stack=st.sampled_from(["encoder.layer", "layers", "h", "encoder.block", "blocks"]),
    embeddings=st.booleans(),
    head=st.booleans(),
)
def test_any_numbered_stack_ranks_blocks_from_the_top(layers, prefix, stack, embeddings, head):
    names = [f"{prefix}embed_tokens.weight"] if embeddings else []
    blocks = [
        [f"{prefix}{stack}.{index}.mlp.weight", f"{prefix}{stack}.{index}.norm.bias"]
        for index in range(layers)
    ]
    names += [name for block in blocks for name in block]
    names += [f"{prefix}final_norm.weight", "score.weight"] if head else []
    depth = assign_depths(names).depth

    top = 0 if head else -1
    for index, block in enumerate(blocks):
        assert {depth[name] for name in block} == {top + layers - index}
    if head:
        assert depth["score.weight"] == depth[f"{prefix}final_norm.weight"] == 0
    if embeddings:
        assert depth[f"{prefix}embed_tokens.weight"] == max(depth.values())
    assert sorted(set(depth.values())) == list(range(max(depth.values()) + 1))


def test_names_between_two_stacks_sit_with_the_block_before_them():
    names = [
        "shared.weight",
        "encoder.block.0.w.weight",
        "encoder.block.1.w.weight",
        "encoder.final_layer_norm.weight",
        "decoder.block.0.w.weight",
        "decoder.block.1.w.weight",
        "lm_head.weight",
    ]
    depth = assign_depths(names).depth
    assert [depth[name] for name in names] == [5, 4, 3, 3, 2, 1, 0]


@given(blocks=st.integers(1, 10), wrapper=st.sampled_from(["", "model.", "net.body."]))
def test_top_level_blocks_rank_in_registration_order(blocks, wrapper):
    names = [f"{wrapper}{index}.{kind}" for index in range(blocks) for kind in ("weight", "bias")]
    layering = assign_depths(names)
    assert layering.rule == "blocks"
    for index in range(blocks):
        assert layering.depth[f"{wrapper}{index}.weight"] == blocks - 1 - index
        assert layering.labels[blocks - 1 - index] == f"{wrapper}{index}"


def test_a_single_module_or_a_bare_parameter_set_is_all_head():
    assert set(assign_depths(["fc.weight", "fc.bias"]).depth.values()) == {0}
    assert set(assign_depths(["weight", "bias"]).depth.values()) == {0}


def test_pretrained_body_and_new_head_are_two_levels():
    names = ["0.0.weight", "0.0.bias", "0.2.weight", "0.2.bias", "1.weight", "1.bias"]
    assert list(assign_depths(names).depth.values()) == [1, 1, 1, 1, 0, 0]


def test_patterns_set_depths_first_match_wins():
    layering = assign_depths(
        BERT, depths={"classifier.*": 0, "encoder.layer.1.*": 1, "*LayerNorm*": 5, "*": 2}
    )
    assert layering.rule == "patterns"
    assert layering.depth["classifier.weight"] == 0
    assert layering.depth["encoder.layer.1.output.LayerNorm.bias"] == 1
    assert layering.depth["embeddings.LayerNorm.weight"] == 5
    assert layering.depth["pooler.dense.weight"] == 2
    assert layering.labels[2] == "*"


def test_head_patterns_put_those_names_on_top_and_rank_the_rest_below():
    layering = assign_depths(BERT, head="classifier.*")
    assert layering.depth["classifier.weight"] == 0
    assert layering.depth["pooler.dense.weight"] == 1
    assert layering.depth["encoder.layer.1.attention.self.query.weight"] == 2
    assert layering.depth["embeddings.word_embeddings.weight"] == 4
    assert layering.labels[0] == "classifier.*"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"depths": {"decoder.*": 0, "*": 1}},
            "depths pattern 'decoder.*' matches no trainable parameter",
        ),
        (
            {"head": ["classifier.*", "lm_head*"]},
            "head pattern 'lm_head*' matches no trainable parameter",
        ),
        (
            {"depths": {"encoder.*": 1}},
            "parameter 'embeddings.word_embeddings.weight' matches no pattern",
        ),
        ({"depths": {"*": -1}}, "depths['*'] must be >= 0, got -1"),
        ({"depths": {"*": 0}, "head": "classifier.*"}, "give head or depths, not both"),
        ({"head": []}, "head must hold at least one name pattern"),
    ],
)
def test_bad_patterns_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("*", r"\*")):
        assign_depths(BERT, **kwargs)


def test_wrong_types_and_no_names_are_errors():
    with pytest.raises(TypeError, match="depths must be a mapping"):
        assign_depths(BERT, depths=["*"])
    with pytest.raises(TypeError, match="depths\\['\\*'\\] must be an integer, got 1.5"):
        assign_depths(BERT, depths={"*": 1.5})
    with pytest.raises(ValueError, match="at least one parameter name"):
        assign_depths([])
