"""A tiny character-level transformer on a small English corpus shipped with lrkit.

Trained the way language models are: AdamW, linear warmup then cosine decay to zero; the tuned
learning rate is the schedule's peak.
"""

from __future__ import annotations

import functools
from importlib import resources

import torch
from torch import nn

from lrkit.schedules import Schedule, warmup_cosine
from lrkit.tasks.loading import cross_entropy, tensor_loaders
from lrkit.tasks.registry import Loaders, Task, register

CONTEXT, STRIDE, WIDTH, HEADS, LAYERS = 32, 16, 48, 4, 2
WARMUP_FRACTION = 0.1


@functools.cache
def corpus() -> str:
    return resources.files("lrkit.tasks").joinpath("data/corpus.txt").read_text(encoding="utf-8")


@functools.cache
def _windows():
    text = corpus()
    alphabet = sorted(set(text))
    codes = torch.tensor([alphabet.index(char) for char in text], dtype=torch.int64)
    starts = torch.arange(0, len(codes) - CONTEXT - 1, STRIDE)
    x = torch.stack([codes[s : s + CONTEXT] for s in starts.tolist()])
    y = torch.stack([codes[s + 1 : s + CONTEXT + 1] for s in starts.tolist()])
    split = int(len(x) * 0.9)  # validation is the end of the text, never seen in training
    return len(alphabet), (x[:split], y[:split]), (x[split + CONTEXT // STRIDE :], y[split + CONTEXT // STRIDE :])


class CharTransformer(nn.Module):
    """Decoder-only transformer: token + position embeddings, pre-norm causal blocks, tied-free head."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, WIDTH)
        self.position = nn.Parameter(torch.zeros(CONTEXT, WIDTH))
        layer = nn.TransformerEncoderLayer(
            WIDTH, HEADS, dim_feedforward=4 * WIDTH, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        hidden = self.embed(tokens) + self.position[:length]
        hidden = self.blocks(hidden, mask=self.mask[:length, :length], is_causal=True)
        return self.head(self.norm(hidden))


def _model(seed: int) -> nn.Module:
    vocab, _, _ = _windows()
    torch.manual_seed(seed)
    return CharTransformer(vocab)


def _loaders(seed: int) -> Loaders:
    _, train, val = _windows()
    return tensor_loaders(train, val, batch_size=16, seed=seed)


def _warmup_cosine(peak: float, steps: int) -> Schedule:
    return warmup_cosine(peak, steps, warmup_steps=max(1, int(WARMUP_FRACTION * steps)))


register(
    Task(
        name="charlm",
        summary="tiny character-level transformer (2 layers, width 48) on bundled text, AdamW, warmup+cosine",
        optimizer_name="AdamW",
        default_lr=1e-3,
        steps=300,
        make_model=_model,
        make_optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
        make_loaders=_loaders,
        loss_fn=cross_entropy,
        make_schedule=_warmup_cosine,
    )
)
