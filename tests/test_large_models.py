"""The guard and the range test on transformer-shaped models: exact restores, snapshots that reuse
their memory, and a long guarded run that holds steady (small models here; the realistic sizes and
the timings are in benchmarks/large_model.py)."""

from __future__ import annotations

import gc
import math

import pytest
import torch
from torch import nn

import lrkit
from lrkit import Guard, Snapshot
from lrkit.spikes import SpikeRule
from lrkit.tasks.training import torch_threads
from torch_state import clone, same


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


class TinyGPT(nn.Module):
    """A causal transformer of the shape users train, small enough for a test."""

    def __init__(self, vocab: int = 50, width: int = 32, depth: int = 2, context: int = 16):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.1, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight  # tied, as in GPT-2
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        hidden = self.tokens(tokens) + self.positions(torch.arange(length))
        hidden = self.blocks(hidden, mask=self.mask[:length, :length], is_causal=True)
        return self.head(self.norm(hidden))


def lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def setup(seed: int = 0, lr: float = 1e-3):
    torch.manual_seed(seed)
    model = TinyGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    generator = torch.Generator().manual_seed(seed + 1)
    batches = [torch.randint(0, 50, (4, 17), generator=generator) for _ in range(300)]
    return model, optimizer, batches


def train_step(model, optimizer, batch, guard=None) -> bool:
    optimizer.zero_grad()
    loss = lm_loss(model, batch)
    loss.backward()
    if guard is None:
        optimizer.step()
        return True
    return guard.step(loss)


def state(model, optimizer):
    return {
        "model": clone(model.state_dict()),
        "optimizer": clone(optimizer.state_dict()),
        "training": [m.training for m in model.modules()],
    }


def storage(snapshot: Snapshot) -> set[int]:
    """Where a snapshot's copies live (to see that a new snapshot reuses an old one's memory)."""
    return {tensor.data_ptr() for tensor in snapshot._tensors}


def test_a_guarded_transformer_matches_the_bare_loop_bit_for_bit():
    bare_model, bare_optimizer, batches = setup()
    torch.manual_seed(7)  # the same dropout masks for both runs
    for batch in batches[:60]:
        train_step(bare_model, bare_optimizer, batch)
    model, optimizer, _ = setup()
    guard = Guard(model, optimizer, snapshot_every=10)
    torch.manual_seed(7)
    for batch in batches[:60]:
        assert train_step(model, optimizer, batch, guard)
    assert not guard.trace.events
    assert same(state(bare_model, bare_optimizer), state(model, optimizer))


def test_a_rollback_restores_the_snapshot_exactly_and_clears_the_gradients():
    model, optimizer, batches = setup()
    guard = Guard(model, optimizer, snapshot_every=10, rule=SpikeRule(warmup_steps=3))
    kept, last_good = None, None
    for batch in batches[:25]:
        train_step(model, optimizer, batch, guard)
        if guard.last_good_step != last_good:  # a snapshot was just taken: what it must give back
            kept, last_good = state(model, optimizer), guard.last_good_step
    assert last_good == 20
    lr = optimizer.param_groups[0]["lr"]
    for batch in batches[25:28]:  # a spike: three huge losses in a row
        optimizer.zero_grad()
        (lm_loss(model, batch) * 1e6).backward()
        guard.step(lm_loss(model, batch).detach() * 1e6)
    assert guard.rollbacks == 1
    assert same(kept["model"], state(model, optimizer)["model"])
    rolled = state(model, optimizer)["optimizer"]
    assert same(kept["optimizer"]["state"], rolled["state"])
    assert math.isclose(rolled["param_groups"][0]["lr"], lr * guard.lr_factor)
    assert all(p.grad is None for p in model.parameters())
    # the run goes on from there as one that was never disturbed would (replayed with the cut LR)
    assert train_step(model, optimizer, batches[28], guard) is False  # skip_batches
    assert guard.trace.events[-1].kind == "rollback"


def test_the_guards_snapshot_leaves_out_gradients_the_rollback_clears_anyway():
    model, optimizer, batches = setup()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    guard = Guard(model, optimizer, snapshot_every=5, rule=SpikeRule(warmup_steps=3))
    for batch in batches[:10]:
        train_step(model, optimizer, batch, guard)
    assert all(p.grad is not None for p in model.parameters())  # present when the snapshot was taken
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    steps = sum(s["step"].numel() * s["step"].element_size() for s in optimizer.state.values())
    # weights, AdamW's two moments and its step counters: no third copy of the model for gradients
    assert guard._good.snapshot.nbytes == 3 * params + buffers + steps


def test_a_parameter_the_optimizer_does_not_step_gets_its_gradient_back_on_a_rewind():
    model, optimizer, batches = setup()
    extra = nn.Parameter(torch.ones(3))  # trained by nobody, but its gradient accumulates
    extra.grad = torch.full((3,), 2.0)
    model.register_parameter("extra", extra)
    guard = Guard(model, optimizer)
    extra.grad.add_(5.0)
    train_step(model, optimizer, batches[0], guard)
    guard.rewind()
    assert torch.equal(extra.grad, torch.full((3,), 2.0))
    assert all(p.grad is None for group in optimizer.param_groups for p in group["params"])


def test_restore_best_still_puts_back_the_gradients_of_the_best_step():
    model, optimizer, batches = setup()
    guard = Guard(model, optimizer)
    for batch in batches[:3]:
        train_step(model, optimizer, batch, guard)
    guard.should_stop(1.0)
    best = state(model, optimizer)
    grads = [p.grad.clone() for p in model.parameters()]
    for batch in batches[3:6]:
        train_step(model, optimizer, batch, guard)
    guard.should_stop(2.0)
    guard.restore_best()
    assert same(best, state(model, optimizer))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def test_each_new_snapshot_of_the_guard_reuses_the_memory_of_the_last():
    model, optimizer, batches = setup()
    guard = Guard(model, optimizer, snapshot_every=5, rule=SpikeRule(warmup_steps=3))
    for batch in batches[:5]:
        train_step(model, optimizer, batch, guard)
    first = guard._good.snapshot
    held = storage(first)
    for batch in batches[5:10]:
        train_step(model, optimizer, batch, guard)
    second = guard._good.snapshot
    assert second is not first and storage(second) == held
    with pytest.raises(RuntimeError, match="discarded"):
        first.restore()
    guard.should_stop(1.0)
    best = guard._best
    best_held = storage(best)
    train_step(model, optimizer, batches[10], guard)
    guard.should_stop(0.5)
    assert guard._best is not best and storage(guard._best) == best_held


def test_a_snapshot_reusing_another_restores_exactly_even_when_the_layout_changed():
    model, optimizer, batches = setup()
    for batch in batches[:3]:
        train_step(model, optimizer, batch)
    old = Snapshot.take(model, optimizer)
    model.double()  # every tensor of the model changes dtype: no spare fits them
    model.positions.weight = nn.Parameter(torch.randn(16, 32, dtype=torch.float64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_step(model, optimizer, batches[3].clone())
    expected = state(model, optimizer)
    new = Snapshot._take(model, optimizer, None, None, True, None, reuse=old)
    for batch in batches[4:7]:
        train_step(model, optimizer, batch)
    new.restore()
    assert same(expected, state(model, optimizer))


def test_a_reused_buffer_keeps_the_memory_format_of_what_it_copies():
    conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(conv.parameters(), lr=1e-2)
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    weight = conv.weight
    moment = optimizer.state[weight]["exp_avg"]
    assert moment.is_contiguous(memory_format=torch.channels_last)
    plain = nn.Conv2d(3, 8, 3)  # same shapes, contiguous: its copies do not fit channels-last tensors
    spare = Snapshot.take(plain, torch.optim.Adam(plain.parameters()))
    snapshot = Snapshot._take(conv, optimizer, None, None, True, None, reuse=spare)
    expected, strides = (moment.clone(), weight.detach().clone()), (moment.stride(), weight.stride())
    optimizer.state.clear()
    weight.data = torch.zeros(1)
    snapshot.restore()  # makes the moment and the weight's data anew from the saved copies
    restored = (optimizer.state[weight]["exp_avg"], weight.detach())
    assert all(torch.equal(a, b) for a, b in zip(restored, expected, strict=True))
    assert (restored[0].stride(), restored[1].stride()) == strides


def test_a_long_guarded_run_with_rollbacks_holds_its_memory_steady():
    model, optimizer, batches = setup()
    guard = Guard(model, optimizer, snapshot_every=20)
    held, live, sizes = None, [], set()
    last_good, kept = None, None
    for step, batch in enumerate(batches):
        optimizer.zero_grad()
        loss = lm_loss(model, batch)
        loss.backward()
        spike = step % 70 in (60, 61, 62)  # a spike every 70 steps: four rollbacks
        guard.step(loss.detach() * 1e3 if spike else loss)
        if guard.last_good_step != last_good:
            last_good, kept = guard.last_good_step, state(model, optimizer)
            sizes.add(guard._good.snapshot.nbytes)
            if step > 40:  # from the second snapshot with AdamW's state on: always the same memory
                held = held or storage(guard._good.snapshot)
                assert storage(guard._good.snapshot) == held
        if spike and step % 70 == 62:
            assert same(kept["model"], state(model, optimizer)["model"])
            assert same(kept["optimizer"]["state"], state(model, optimizer)["optimizer"]["state"])
        if step % 50 == 49:
            gc.collect()
            live.append(sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()))
    assert guard.rollbacks == 4 and guard.lr_scale == pytest.approx(0.3**4)
    assert len(sizes - {min(sizes)}) == 1  # the first (before AdamW had state) and then one size
    assert max(live[1:]) - min(live[1:]) <= 2  # no tensors pile up


def test_a_guard_with_a_directory_rolls_back_exactly_and_leaves_no_file(tmp_path):
    model, optimizer, batches = setup()
    with Guard(model, optimizer, directory=tmp_path, snapshot_every=5, rule=SpikeRule(warmup_steps=3)) as guard:
        for batch in batches[:10]:
            train_step(model, optimizer, batch, guard)
        assert len(list(tmp_path.iterdir())) == 1
        kept = state(model, optimizer)
        train_step(model, optimizer, batches[10], guard)
        guard.rewind()
        assert same(kept["model"], state(model, optimizer)["model"])
        assert same(kept["optimizer"], state(model, optimizer)["optimizer"])
    assert not any(tmp_path.iterdir())


def test_a_snapshot_file_of_views_and_tied_weights_restores_them_in_place(tmp_path):
    model, optimizer, batches = setup()
    flat = torch.zeros(10)
    model.register_buffer("window", flat[2:6])  # a view into a larger tensor
    for batch in batches[:2]:
        train_step(model, optimizer, batch)
    expected = state(model, optimizer)
    grads = [p.grad.clone() for p in model.parameters()]
    snapshot = Snapshot.take(model, optimizer, directory=tmp_path)
    for batch in batches[2:4]:
        train_step(model, optimizer, batch)
    model.window.add_(1.0)
    snapshot.restore()
    assert same(expected, state(model, optimizer))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert model.head.weight is model.tokens.weight and torch.equal(flat, torch.zeros(10))
    snapshot.discard()
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("directory", [False, True])
def test_the_range_test_on_a_transformer_leaves_everything_as_it_was(tmp_path, directory):
    model, optimizer, batches = setup()
    for batch in batches[:2]:
        train_step(model, optimizer, batch)
    before = state(model, optimizer)
    grads = [p.grad.clone() for p in model.parameters()]
    result = lrkit.find_lr(
        model, optimizer, lm_loss, batches[:40], steps=30, min_lr=1e-5, max_lr=1.0,
        directory=tmp_path if directory else None,
    )
    assert result.steps >= 8
    assert same(before, state(model, optimizer))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert not any(tmp_path.iterdir())
