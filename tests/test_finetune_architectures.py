"""Layer-wise LR decay on the architectures people fine-tune, built tiny from their configs.

Each model gets the depths the BEiT/MAE/timm recipes give it (lrkit counts from the head down:
the embeddings deepest, block i of n at depth n - i, the final norm, pooler and head at 0), one
group per parameter, and an optimizer that trains.
"""

import pytest
import torch
from torch import nn

import lrkit
from lrkit.schedules.composites import warmup_cosine

transformers = pytest.importorskip("transformers")

TEXT = {"vocab_size": 40, "max_position_embeddings": 16}
BERT = {"hidden_size": 8, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 16}


class Stem(nn.Module):
    """torchvision's ResNet names (conv1, bn1, layer1..layer4, fc), two basic blocks a stage."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for stage in range(1, 5):
            blocks = [nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4))]
            blocks.append(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4)))
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(4, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(images))))
        for stage in range(1, 5):
            for block in getattr(self, f"layer{stage}"):
                x = torch.relu(x + block(x))
        return self.fc(x.mean(dim=(2, 3)))


class TimmViT(nn.Module):
    """timm's VisionTransformer names (cls_token, pos_embed, patch_embed, blocks.N, norm, head)
    and its ``no_weight_decay`` hook, which the MAE and BEiT fine-tuning recipes honour."""

    def __init__(self, dim: int = 8, depth: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 5, dim) * 0.02)
        self.blocks = nn.Sequential(
            *(nn.TransformerEncoderLayer(dim, 2, 16, 0.0, batch_first=True) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(images), -1, -1), patches], dim=1)
        return self.head(self.norm(self.blocks(tokens + self.pos_embed))[:, 0])


class LoRA(nn.Module):
    """A frozen linear layer plus a trainable low-rank update, named as in PEFT."""

    def __init__(self, base: nn.Linear, rank: int = 2) -> None:
        super().__init__()
        self.base_layer = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


def bert(layers: int = 3):
    config = transformers.BertConfig(**{**BERT, "num_hidden_layers": layers}, **TEXT)
    return transformers.BertForSequenceClassification(config)


def lora_bert():
    model = bert().requires_grad_(False)
    for layer in model.bert.encoder.layer:
        layer.attention.self.query = LoRA(layer.attention.self.query)
        layer.attention.self.value = LoRA(layer.attention.self.value)
    model.classifier.requires_grad_(True)
    return model


def frozen_bert():
    model = bert()
    model.bert.requires_grad_(False)
    return model


def gpt2():
    config = transformers.GPT2Config(
        n_embd=8, n_layer=3, n_head=2, vocab_size=40, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def t5():
    config = transformers.T5Config(
        d_model=8,
        d_kv=4,
        d_ff=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        vocab_size=40,
        decoder_start_token_id=0,
    )
    return transformers.T5ForConditionalGeneration(config)


def vit():
    config = transformers.ViTConfig(**BERT, image_size=8, patch_size=4, num_labels=3)
    return transformers.ViTForImageClassification(config)


MODELS = {
    "bert": bert,
    "roberta": lambda: transformers.RobertaForSequenceClassification(
        transformers.RobertaConfig(**BERT, **TEXT)
    ),
    "distilbert": lambda: transformers.DistilBertForSequenceClassification(
        transformers.DistilBertConfig(dim=8, n_layers=3, n_heads=2, hidden_dim=16, **TEXT)
    ),
    "gpt2": gpt2,
    "t5": t5,
    "vit": vit,
    "timm-vit": TimmViT,
    "resnet": Stem,
    "lora-bert": lora_bert,
    "frozen-bert": frozen_bert,
}

# the depth of the first and the last trained parameter of each part, in registration order
DEPTHS = {
    "bert": {
        "bert.embeddings": (4, 4),
        "bert.encoder": (3, 1),
        "bert.pooler": (0, 0),
        "classifier": (0, 0),
    },
    "roberta": {"roberta.embeddings": (4, 4), "roberta.encoder": (3, 1), "classifier": (0, 0)},
    "distilbert": {
        "distilbert.embeddings": (4, 4),
        "distilbert.transformer": (3, 1),
        "pre_classifier": (0, 0),
        "classifier": (0, 0),
    },
    # lm_head.weight is wte.weight: one parameter, listed under its first name
    "gpt2": {
        "transformer.wte": (4, 4),
        "transformer.wpe": (4, 4),
        "transformer.h": (3, 1),
        "transformer.ln_f": (0, 0),
    },
    # the two stacks in the order the data flows, lm_head tied to shared
    "t5": {
        "shared": (5, 5),
        "encoder.block": (4, 3),
        "encoder.final_layer_norm": (3, 3),
        "decoder.block": (2, 1),
        "decoder.final_layer_norm": (0, 0),
    },
    "vit": {
        "vit.embeddings": (4, 4),
        "vit.layers": (3, 1),
        "vit.layernorm": (0, 0),
        "classifier": (0, 0),
    },
    "timm-vit": {
        "cls_token": (4, 4),
        "pos_embed": (4, 4),
        "patch_embed": (4, 4),
        "blocks": (3, 1),
        "norm": (0, 0),
        "head": (0, 0),
    },
    # the stem together, then a level a stage (timm's coarse grouping)
    "resnet": {
        "conv1": (5, 5),
        "bn1": (5, 5),
        "layer1": (4, 4),
        "layer2": (3, 3),
        "layer3": (2, 2),
        "layer4": (1, 1),
        "fc": (0, 0),
    },
    # only the adapters and the classifier train, at the depths of the layers they sit in
    "lora-bert": {"bert.encoder": (3, 1), "classifier": (0, 0)},
    "frozen-bert": {"classifier": (0, 0)},
}


def placed(model, groups):
    """(name, depth, weight decay) of each trained parameter, in registration order."""
    where = {id(param): group for group in groups for param in group["params"]}
    return [
        (name, where[id(param)]["depth"], where[id(param)].get("weight_decay"))
        for name, param in model.named_parameters()
        if id(param) in where
    ]


@pytest.mark.parametrize("architecture", list(MODELS))
def test_each_architecture_gets_the_recipes_depths(architecture):
    torch.manual_seed(0)
    model = MODELS[architecture]()
    groups = lrkit.param_groups(model, 1.0, layer_decay=0.5, weight_decay=0.1)
    rows = placed(model, groups)

    def within(name, part):
        return name == part or name.startswith(f"{part}.")

    table = {}
    for part in DEPTHS[architecture]:
        inside = [depth for name, depth, _ in rows if within(name, part)]
        table[part] = (inside[0], inside[-1])
    assert table == DEPTHS[architecture]
    assert all(any(within(name, part) for part in table) for name, _, _ in rows)  # all covered
    depths = [depth for _, depth, _ in rows]
    assert depths == sorted(depths, reverse=True)  # input to output, never a step back down
    assert sorted(set(depths)) == list(range(max(depths) + 1))

    trained = [param for param in model.parameters() if param.requires_grad]
    listed = [param for group in groups for param in group["params"]]
    assert len(listed) == len({id(param) for param in listed}) == len(trained)
    for group in groups:
        assert group["lr"] == 0.5 ** group["depth"]


def batch_for(architecture):
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 40, (4, 6), generator=generator)
    labels = torch.randint(0, 2, (4,), generator=generator)
    images = torch.randn(4, 3, 8, 8, generator=generator)
    if architecture in ("gpt2", "t5"):
        return {"input_ids": tokens, "labels": tokens}
    if architecture == "vit":
        return {"pixel_values": images, "labels": labels}
    if architecture in ("timm-vit", "resnet"):
        return images, labels
    return {"input_ids": tokens, "labels": labels}


def loss_of(model, batch):
    if isinstance(batch, dict):
        return model(**batch).loss
    images, labels = batch
    return nn.functional.cross_entropy(model(images), labels)


@pytest.mark.parametrize("architecture", list(MODELS))
def test_adamw_trains_each_architecture_and_the_schedule_keeps_the_ratios(architecture):
    torch.manual_seed(0)
    model = MODELS[architecture]().eval()  # no dropout: the same batch, a falling loss
    groups = lrkit.param_groups(
        model, 1e-2, layer_decay=0.8, head_lr_mult=0.5, weight_decay=0.01
    )  # head_lr_mult below layer_decay: depth 1 is the fastest group, not the head
    top = max(group["lr"] for group in groups)  # 8e-3, or the head's 5e-3 with the body frozen
    ratios = [group["lr"] / top for group in groups]
    optimizer = torch.optim.AdamW(groups)
    schedule = warmup_cosine(peak=1e-2, steps=20, warmup_steps=1)
    scheduler = lrkit.ScheduleLR(optimizer, schedule)
    batch = batch_for(architecture)

    first = loss_of(model, batch).item()
    for step in range(1, 6):
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
        scheduler.step()
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            assert group["lr"] == pytest.approx(ratio * float(schedule(step)))
    assert loss_of(model, batch).item() < first


@pytest.mark.parametrize("architecture", ["gpt2", "t5"])
def test_a_tied_lm_head_is_named_by_either_of_its_names(architecture):
    model = MODELS[architecture]()
    tied = model.lm_head.weight
    assert tied is model.get_input_embeddings().weight

    groups = lrkit.param_groups(
        model, 1e-3, layer_decay=0.5, head="lm_head.*", no_decay="lm_head.weight"
    )
    head = groups[0]
    assert head["params"] == [tied]  # the one tied parameter, once
    assert head["name"] == "lm_head.* (no decay)"
    assert (head["depth"], head["lr"], head["weight_decay"]) == (0, 1e-3, 0.0)
    torch.optim.AdamW(groups)  # no parameter twice

    custom = lrkit.param_groups(model, 1e-3, depths={"lm_head.*": 0, "*": 1})
    assert [group["params"] for group in custom if group["depth"] == 0] == [[tied]]


def test_timm_models_keep_their_no_weight_decay_parameters_undecayed():
    def decays(model):
        return {
            name: decay
            for name, _, decay in placed(model, lrkit.param_groups(model, 1e-3, weight_decay=0.05))
        }

    model = TimmViT()
    assert decays(model)["cls_token"] == decays(model)["pos_embed"] == 0.0  # as timm, MAE, BEiT
    assert decays(model)["patch_embed.proj.weight"] == 0.05
    wrapped = decays(nn.Sequential(model))  # the hook names the module's own parameters
    assert wrapped["0.cls_token"] == wrapped["0.pos_embed"] == 0.0


def test_hugging_face_vit_tokens_decay_unless_named_in_no_decay():
    model = vit()

    def decays(**options):
        rows = placed(model, lrkit.param_groups(model, 1e-3, weight_decay=0.05, **options))
        return {name: decay for name, _, decay in rows if name.startswith("vit.embeddings.")}

    # as Hugging Face's Trainer: the class token and position embeddings are 3-D, so decayed
    default = decays()
    assert (
        default["vit.embeddings.cls_token"] == default["vit.embeddings.position_embeddings"] == 0.05
    )
    recipe = decays(no_decay=["*.cls_token", "*.position_embeddings"])  # as MAE and BEiT
    assert recipe["vit.embeddings.cls_token"] == recipe["vit.embeddings.position_embeddings"] == 0.0


def test_each_level_is_named_by_the_modules_it_holds():
    torch.manual_seed(0)
    model = bert(layers=12)
    groups = lrkit.param_groups(model, 2e-5, layer_decay=0.9, weight_decay=0.01)
    table = lrkit.describe_groups(groups)
    names = [row.name for row in table.rows]
    assert len(names) == 28  # head, 12 layers, embeddings; each with and without decay
    assert names[:3] == [
        "bert.pooler.dense, classifier",  # not "bert, classifier": the rest of bert is below
        "bert.pooler.dense, classifier (no decay)",
        "bert.encoder.layer.11",
    ]
    assert names[-1] == "bert.embeddings (no decay)"
    assert "13 │ 5.08e-06 │" in str(table)  # the embeddings at 2e-5 * 0.9**13

    def labels(model):
        return [group["name"] for group in lrkit.param_groups(model, 1.0)]

    assert labels(gpt2())[-1] == "transformer.wte, transformer.wpe"  # not "transformer"
    assert labels(Stem())[-2:] == ["conv1, bn1", "conv1, bn1 (no decay)"]
    assert labels(TimmViT())[0] == "norm, head"
    assert labels(TimmViT())[-1] == "cls_token, pos_embed, patch_embed.proj (no decay)"


def test_t5_stacks_rank_side_by_side_with_the_documented_depths():
    blocks = 2  # as in docs/finetune.md, for this tiny T5
    side_by_side = {"shared.*": blocks + 1, "encoder.final_layer_norm.*": 1}
    side_by_side |= {f"*coder.block.{index}.*": blocks - index for index in range(blocks)}
    side_by_side["*"] = 0

    model = t5()
    depths = {}
    for name, depth, _ in placed(model, lrkit.param_groups(model, 1.0, depths=side_by_side)):
        depths.setdefault(".".join(name.split(".")[:3]).removesuffix(".weight"), set()).add(depth)
    assert depths == {
        "shared": {3},  # and the tied lm_head with it
        "encoder.block.0": {2},
        "encoder.block.1": {1},
        "encoder.final_layer_norm": {1},
        "decoder.block.0": {2},
        "decoder.block.1": {1},
        "decoder.final_layer_norm": {0},
    }
