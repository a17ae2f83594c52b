"""The documentation's examples run: every ```python block of README.md and docs/*.md, and every
``lrkit`` command shown in a ```bash or ```console block.

A Python block runs as written, one test per block (id ``file:line`` of its first line). Its
namespace holds the names its reader brings (``model``, ``optimizer``, ``train_loader``,
``loss_fn``, ``train``, ...): small real objects from lrkit's built-in tasks, made per page by a
``Reader`` below, plus the imports of the page's earlier blocks, and the optional extra's module
(``optax``, ``keras``, ...) when the block names one; without that extra the block is skipped. It
runs in a temporary folder, where the files it reads are prepared and the files it writes go.

What a comment shows is checked too: a trailing comment that is a Python literal
(``s(0)  # 0.0``) must equal the value of its expression, and a whole comment line right after an
expression must be the value's ``repr`` (a string as it is), as a REPL would print it.

A block that cannot run here is marked on the line before its fence with
``<!-- docs-test: skip (the reason) -->``, and skipped with that reason.

A command is parsed by lrkit's own click command, so a subcommand, an option or a choice that does
not exist fails (a file argument that does not exist here is fine); the cheap ones also run.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import lrkit
from lrkit.cli.app import cli, main
from lrkit.tasks import get_task
from lrkit.tasks import train as train_task
from lrkit.tasks.training import evaluate as evaluate_task
from lrkit.tasks.training import torch_threads

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>.+)\)\s*-->")

# a block that matches the pattern needs the module (an optional extra), given to it by that name
EXTRAS = {
    r"\boptax\b": "optax",
    r"\bkeras\b": "keras",
    r"\blightning\b": "lightning",
    r"\btransformers\b": "transformers",
    r"\bsweep\(|lrkit\.sweeps\b": "optuna",
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown page."""

    path: Path
    line: int  # of the block's first line of code, 1-based
    language: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{os.path.relpath(self.path, ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = re.match(r"```(\w*)\s*$", lines[index])
        if fence is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        mark = SKIP_MARK.search(before)
        code = "".join(line + "\n" for line in lines[index + 1 : end])
        skip = mark.group("reason") if mark else None
        blocks.append(Block(path, index + 2, fence.group(1), code, skip))
        index = end + 1
    return blocks


def blocks_in(*languages: str) -> list[Block]:
    found = (block for path in DOCUMENTS for block in read_blocks(path))
    return [block for block in found if block.language in languages]


PYTHON_BLOCKS = blocks_in("python")
SHELL_BLOCKS = blocks_in("bash", "console")


def test_the_pages_have_python_blocks():
    assert len(PYTHON_BLOCKS) >= 20, [block.id for block in PYTHON_BLOCKS]


def test_blocks_skip_marks_and_commands_are_read(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n<!-- docs-test: skip (needs a PostgreSQL server) -->\n"
        "```python\nconnect()\n```\n\n```python\nrun()\n```\n"
        "```console\n$ lrkit sweep --task a \\\n    --trials 3   # note\nan output line\n"
        "machine-2$ lrkit tasks\n$ python -c 'print(1)'\n```\n"
    )
    python, other, console = read_blocks(page)
    assert (python.line, python.code) == (5, "connect()\n")
    assert (python.skip, other.skip) == ("needs a PostgreSQL server", None)
    assert [(c.line, c.args) for c in lrkit_commands(console)] == [
        (12, ("sweep", "--task", "a", "--trials", "3")),
        (15, ("tasks",)),
    ]


# --- what a page's reader brings ---------------------------------------------------------------


class Reader:
    """The names a page's blocks take from their reader, each made on first use.

    ``files`` names the files the page's blocks read, made in the block's folder when it names them.
    """

    files: dict[str, Callable[[Path], None]] = {}

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names_for(self, code: str) -> dict[str, Any]:
        for name, make in self.files.items():
            if name in code:
                make(self.folder / name)
        used = {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
        return {name: getattr(self, name) for name in sorted(used) if self._provides(name)}

    @classmethod
    def _provides(cls, name: str) -> bool:
        return not name.startswith("_") and hasattr(cls, name) and not hasattr(Reader, name)


def training_log(path: Path) -> None:
    """A real training log: 200 steps of digits-mlp, with LR and validation loss."""
    train_task("digits-mlp", 1e-3, steps=200).trace.save(path)


def small_train(lr: float, report: Callable[[int, float], None]) -> float:
    """A reader's ``train(lr, report) -> val_loss``: 60 steps of cancer-logreg."""
    return train_task("cancer-logreg", lr, steps=60, eval_every=10, on_eval=report).score


class Digits(Reader):
    """digits-mlp: its model, Adam, loaders and ``loss_fn(model, batch)``."""

    _task = get_task("digits-mlp")

    @cached_property
    def model(self) -> nn.Module:
        return self._task.model(0)

    @cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._task.optimizer(self.model.parameters(), self._task.default_lr)

    @cached_property
    def train_loader(self):
        return self._task.loaders(0)[0]

    @cached_property
    def val_loader(self):
        return self._task.loaders(0)[1]

    @property
    def loss_fn(self):
        return self._task.loss_fn


class ReadmeReader(Digits):
    files = {"metrics.csv": training_log}
    train = staticmethod(small_train)


class DiagnoseReader(Reader):
    files = {"metrics.csv": training_log}


class FinderReader(Digits):
    @cached_property
    def scheduler(self):
        return lrkit.ScheduleLR(self.optimizer, "warmup(50) >> constant(1e-3)")

    @cached_property
    def scaler(self):
        return torch.amp.GradScaler("cpu")

    @cached_property
    def module(self):
        """digits-mlp as a LightningModule with an ``lr`` attribute."""
        import lightning.pytorch as pl

        task, model = self._task, self.model

        class Module(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.model, self.lr = model, task.default_lr

            def training_step(self, batch, batch_idx):
                return task.loss_fn(self.model, batch)

            def configure_optimizers(self):
                return task.optimizer(self.parameters(), self.lr)

        return Module()

    @cached_property
    def trainer(self):
        """digits-mlp in a Hugging Face Trainer: dict records in, a dict with the loss out."""
        from transformers import Trainer, TrainingArguments

        class Model(nn.Module):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def forward(self, x, labels):
                return {"loss": nn.functional.cross_entropy(self.net(x), labels)}

        x, y = self.train_loader.dataset.tensors
        records = [{"x": row, "labels": label} for row, label in zip(x, y, strict=True)]
        args = TrainingArguments(str(self.folder), report_to="none", use_cpu=True, per_device_train_batch_size=32)
        return Trainer(model=Model(self._task.model(0)), args=args, train_dataset=records)


class FinetuneReader(Digits):
    """finetune-digits: a body pre-trained on digits 0-4, a new head for 5-9."""

    _task = get_task("finetune-digits")


class GuardReader(Digits):
    @cached_property
    def scheduler(self):
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=200)

    @cached_property
    def loader(self):
        # batches of 8: the loop gets to its validation at step 99
        return DataLoader(self.train_loader.dataset, batch_size=8)

    @cached_property
    def loss_fn(self):
        return nn.CrossEntropyLoss()  # this page's loops call loss_fn(model(x), y)

    def validate(self, model: nn.Module) -> float:
        return evaluate_task(self._task, model, self.val_loader)[0]

    @cached_property
    def _blown_up(self):
        return train_task(self._task, 1.0, steps=80).trace  # a run that blows up

    @cached_property
    def losses(self) -> list[float]:
        return self._blown_up.loss.tolist()

    @cached_property
    def lrs(self) -> list[float]:
        return self._blown_up.lr.tolist()

    step = 100

    @cached_property
    def args(self):
        from transformers import TrainingArguments

        return TrainingArguments(output_dir=str(self.folder), report_to="none", use_cpu=True)

    @cached_property
    def train_dataset(self):
        x, y = self.train_loader.dataset.tensors
        return [{"x": row, "labels": label} for row, label in zip(x[:64], y[:64], strict=True)]


class BodyAndHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SchedulesReader(Reader):
    @cached_property
    def model(self) -> nn.Module:
        return BodyAndHead()

    steps = 2000  # the loop reports a validation loss twice
    val_loss = 0.5

    @property
    def path(self) -> Path:
        return self.folder / "checkpoint.pt"


class MigratingReader(FinderReader):
    train = staticmethod(small_train)


class SweepReader(Reader):
    train = staticmethod(small_train)
    val_loss = 0.5


READERS: dict[str, type[Reader]] = {
    "README.md": ReadmeReader,
    "diagnose.md": DiagnoseReader,
    "finder.md": FinderReader,
    "finetune.md": FinetuneReader,
    "guard.md": GuardReader,
    "migrating.md": MigratingReader,
    "schedules.md": SchedulesReader,
    "sweep.md": SweepReader,
}


# --- the Python blocks -------------------------------------------------------------------------


@pytest.mark.filterwarnings("error::UserWarning:lrkit", "error::UserWarning:__docs__")
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.id for block in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for pattern, module in EXTRAS.items():
        if re.search(pattern, block.code):
            if module == "keras":  # torch, since the test environment has no TensorFlow
                monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
            namespace[module] = pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    with torch_threads(1):
        namespace.update(READERS.get(block.path.name, Reader)(tmp_path).names_for(block.code))
        for earlier in PYTHON_BLOCKS:
            if earlier.path == block.path and earlier.line < block.line:
                run_imports(earlier, namespace)
        linecache.cache[block.id] = (len(block.code), None, block.code.splitlines(True), block.id)
        tree = ast.parse(block.code, filename=block.id)
        for statement in tree.body:
            run(statement, shown_check(statement, block.code), namespace, block)


def run_imports(block: Block, namespace: dict[str, Any]) -> None:
    """Run an earlier block's top-level imports: the page's reader has them already."""
    for statement in ast.parse(block.code).body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            with contextlib.suppress(ImportError):
                exec(compile(ast.Module([statement], []), block.id, "exec"), namespace)


def run(statement: ast.stmt, check, namespace: dict[str, Any], block: Block) -> None:
    """Run one statement (tracebacks name the block and the line in it)."""
    if check is None:
        exec(compile(ast.Module([statement], []), block.id, "exec"), namespace)
    else:
        check(eval(compile(ast.Expression(statement.value), block.id, "eval"), namespace))


def shown_check(statement: ast.stmt, code: str) -> Callable[[Any], None] | None:
    """A check of the value the comments show for an expression statement, or None."""
    if not isinstance(statement, ast.Expr):
        return None
    lines = code.splitlines()
    trailing = lines[statement.end_lineno - 1][statement.end_col_offset :].strip()
    following = lines[statement.end_lineno].strip() if statement.end_lineno < len(lines) else ""
    if trailing.startswith("#"):
        return literal_check(trailing[1:].strip())
    if not trailing and following.startswith("#"):
        return repr_check(following[1:].strip())
    return None


def literal_check(comment: str) -> Callable[[Any], None] | None:
    try:
        expected = ast.literal_eval(comment)
    except (ValueError, SyntaxError):
        return None  # words, not a value

    def check(value: Any) -> None:
        assert same(value, expected), f"the comment shows {comment}, the code gives {value!r}"

    return check


def repr_check(comment: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        shown = value if isinstance(value, str) else repr(value)
        assert shown == comment, f"the comment shows {comment!r}, the code gives {shown!r}"

    return check


def same(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple | list):
        return len(value) == len(expected) and all(map(same, value, expected))
    if isinstance(expected, float):
        return float(value) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    return value == expected


def test_comments_that_show_values_are_checked():
    code = "1 + 1  # 2\nmax(2, 3)\n# 3\nlen('ab')  # two of them\n"
    checks = [shown_check(statement, code) for statement in ast.parse(code).body]
    assert checks[2] is None
    checks[0](2)
    checks[1](3)
    with pytest.raises(AssertionError, match="the comment shows 2, the code gives 3"):
        checks[0](3)
    with pytest.raises(AssertionError, match="the comment shows '3', the code gives '4'"):
        checks[1](4)


# --- the lrkit commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    block: Block
    line: int
    args: tuple[str, ...]  # after "lrkit"

    @property
    def id(self) -> str:
        return f"{os.path.relpath(self.block.path, ROOT)}:{self.line}"


def lrkit_commands(block: Block) -> list[Command]:
    """The ``lrkit ...`` commands of a shell block: every line of a bash block, the lines after a
    ``$`` prompt in a console block; a line ending in ``\\`` continues on the next."""
    commands, lines = [], block.code.splitlines()
    index = 0
    while index < len(lines):
        first, text = index, lines[index]
        while text.endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text[:-1] + " " + lines[index].strip()
        index += 1
        if block.language == "console":
            prompt = re.match(r"\S*\$ ", text)
            if prompt is None:
                continue
            text = text[prompt.end() :]
        words = shlex.split(text, comments=True) if text.lstrip().startswith("lrkit ") else []
        if words:
            commands.append(Command(block, block.line + first, tuple(words[1:])))
    return commands


COMMANDS = [command for block in SHELL_BLOCKS for command in lrkit_commands(block)]
CHEAP = {"tasks", "schedule"}  # commands that take well under a second: run them, not only parse


@pytest.mark.parametrize("command", COMMANDS, ids=[command.id for command in COMMANDS])
def test_lrkit_command_parses(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    name, *args = command.args
    context = click.Context(cli, info_name="lrkit")
    subcommand = cli.get_command(context, name)
    assert subcommand is not None, f"lrkit has no command {name!r}"
    try:
        subcommand.make_context(name, list(args), parent=context)
    except click.BadParameter as error:
        if not isinstance(error.param.type, click.Path | click.File):
            raise
        # a file the page's reader has and this folder has not
    if name in CHEAP:
        assert main(list(command.args)) == 0


def test_the_pages_show_lrkit_commands():
    shown = {command.args[0] for command in COMMANDS}
    assert shown >= {"find", "schedule", "diagnose", "sweep", "explore", "report", "tasks"}
