"""Layer depth from parameter names: 0 for the head, one more for each block below it.

Layer-wise LR decay needs to know how far each parameter sits below the output. This works from
the names alone (in registration order), so it needs no torch: numbered blocks such as
``encoder.layer.N`` (Hugging Face transformers), otherwise the model's top-level blocks, or a
mapping from name pattern to depth given by the user.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from lrkit import checks

# a numbered block of a layer stack: encoder.layer.3, model.layers.3, transformer.h.3,
# encoder.block.3, and torchvision's ResNet stages layer1..layer4 (timm's coarse grouping)
_BLOCK = re.compile(r"(?:^|\.)(?:(?:layer|layers|block|blocks|resblocks|h)\.|layer)\d+(?=\.|$)")


@dataclass(frozen=True)
class LayerDepths:
    """Each parameter's depth (0 = head), a readable label per depth, and the rule that set them."""

    depth: Mapping[str, int]
    labels: Mapping[int, str]
    rule: str  # "stack" (numbered blocks), "blocks" (top-level blocks), "patterns" (user mapping)

    @property
    def deepest(self) -> int:
        return max(self.depth.values())


def assign_depths(
    names: Sequence[str],
    *,
    depths: Mapping[str, int] | None = None,
    head: str | Sequence[str] | None = None,
    frozen: Collection[str] = (),
    tied: Mapping[str, Collection[str]] | None = None,
) -> LayerDepths:
    """Depth of each parameter name (in registration order), 0 for the head.

    With a numbered stack of blocks, the top block is one below the head, each block under it one
    deeper, and everything registered before the first block (the embeddings) deepest of all;
    what comes after the last block (pooler, classifier, final norm) is the head. Without a stack,
    each top-level block is a layer and the last one is the head. ``depths`` maps glob patterns
    (``fnmatch``, first match wins) to depths instead. ``head`` names the head's parameters by
    pattern; the rest are ranked below it. ``frozen`` names (parameters left out of training) get
    no depth, but still count for the structure, so freezing the body does not move the head;
    patterns must match, and ``depths`` must cover, the names not frozen. ``tied`` gives the other
    names of a shared parameter (GPT-2's ``lm_head.weight`` for ``transformer.wte.weight``) by the
    name it is listed under: a pattern matching any of them matches it.
    """
    names = list(names)
    if not names:
        raise ValueError("names must hold at least one parameter name, got none")
    trained = [name for name in names if name not in frozen]
    if not trained:
        raise ValueError(f"frozen must leave at least one of names, got all {len(names)} frozen")
    if depths is not None and head is not None:
        raise ValueError("give head or depths, not both: with depths, depth 0 is the head")
    tied = tied or {}
    if depths is not None:
        return _from_patterns(trained, depths, tied)
    if head is None:
        return _restricted(_automatic(names), trained)
    matching("head", trained, head, tied)  # each pattern must name a parameter to train
    return _restricted(_with_head(names, head, tied), trained)


def _with_head(
    names: list[str], head: str | Sequence[str], tied: Mapping[str, Collection[str]]
) -> LayerDepths:
    """Depth 0 for the names ``head`` matches, the rest ranked below it."""
    in_head = matching("head", names, head, tied)
    rest = [name for name in names if name not in in_head]
    depth = dict.fromkeys(in_head, 0)
    labels = {0: ", ".join(_patterns("head", head))}
    rule = "patterns"
    if rest:
        below = _automatic(rest)
        depth.update({name: level + 1 for name, level in below.depth.items()})
        labels.update({level + 1: label for level, label in below.labels.items()})
        rule = below.rule
    return LayerDepths({name: depth[name] for name in names}, labels, rule)


def _restricted(layering: LayerDepths, names: list[str]) -> LayerDepths:
    """The depths of ``names`` alone, as the whole model set them (no renumbering)."""
    depth = {name: layering.depth[name] for name in names}
    return LayerDepths(
        depth,
        {level: layering.labels[level] for level in sorted(set(depth.values()))},
        layering.rule,
    )


def matching(
    argument: str,
    names: Sequence[str],
    value: str | Sequence[str],
    tied: Mapping[str, Collection[str]] | None = None,
) -> set[str]:
    """The names any of the glob patterns in ``value`` matches, directly or through another name of
    the same parameter in ``tied``; a pattern matching none is an error."""
    patterns = _patterns(argument, value)
    matched: set[str] = set()
    for pattern in patterns:
        hits = {name for name in names if _matches(name, pattern, tied or {})}
        if not hits:
            raise ValueError(
                f"{argument} pattern {pattern!r} matches no trainable parameter; "
                f"names look like {_examples(list(names))}"
            )
        matched |= hits
    return matched


def _matches(name: str, pattern: str, tied: Mapping[str, Collection[str]]) -> bool:
    return any(fnmatchcase(alias, pattern) for alias in (name, *tied.get(name, ())))


def _patterns(argument: str, value: str | Sequence[str]) -> list[str]:
    if not isinstance(value, str | Iterable):
        raise TypeError(
            f"{argument} must be a name pattern or a list of them, "
            f"got {value!r} ({type(value).__name__})"
        )
    patterns = [value] if isinstance(value, str) else list(value)
    if not patterns:
        raise ValueError(f"{argument} must hold at least one name pattern, got {value!r}")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{argument} patterns must be strings, got {pattern!r}")
    return patterns


def _examples(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:3])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > 3 else shown


def _from_patterns(
    names: list[str], depths: Mapping[str, int], tied: Mapping[str, Collection[str]]
) -> LayerDepths:
    if not isinstance(depths, Mapping):
        raise TypeError(f"depths must be a mapping from name pattern to depth, got {depths!r}")
    patterns = _patterns("depths", list(depths))
    levels = {
        pattern: checks.integer(f"depths[{pattern!r}]", depths[pattern], minimum=0)
        for pattern in patterns
    }
    matching("depths", names, patterns, tied)
    depth: dict[str, int] = {}
    for name in names:
        pattern = next((pattern for pattern in patterns if _matches(name, pattern, tied)), None)
        if pattern is None:
            raise ValueError(
                f"depths: parameter {name!r} matches no pattern in {patterns!r}; "
                "add a catch-all '*' to give the rest a depth"
            )
        depth[name] = levels[pattern]
    labels: dict[int, str] = {}
    for pattern, level in levels.items():
        labels[level] = f"{labels[level]}, {pattern}" if level in labels else pattern
    return LayerDepths(depth, labels, "patterns")


def _automatic(names: list[str]) -> LayerDepths:
    blocks = [_block_of(name) for name in names]
    if any(block is not None for block in blocks):
        return _stack(names, blocks)
    return _top_level(names)


def _block_of(name: str) -> str | None:
    found = _BLOCK.search(name)
    return None if found is None else name[: found.end()]


def _stack(names: list[str], blocks: list[str | None]) -> LayerDepths:
    """Depths for a stack of numbered blocks: before the first block is deepest, after the last is the head."""
    order = list(dict.fromkeys(block for block in blocks if block is not None))
    last = len(blocks) - 1 - blocks[::-1].index(order[-1])
    # levels counted from the bottom: 0 = embeddings, 1.. = blocks, len(order) + 1 = head
    # a name outside any block sits with the block registered before it
    raw: list[int] = []
    current = 0
    for index, block in enumerate(blocks):
        if block is not None:
            current = order.index(block) + 1
        elif index > last:
            current = len(order) + 1
        raw.append(current)
    groups = {
        level: [name for name, at in zip(names, raw, strict=True) if at == level]
        for level in sorted(set(raw))
    }
    top = max(groups)
    depth = {name: top - level for name, level in zip(names, raw, strict=True)}
    labels = {}
    for level, members in groups.items():
        labels[top - level] = (
            order[level - 1] if 1 <= level <= len(order) else _common_label(members, names)
        )
    return _compact(names, depth, labels, "stack")


def _top_level(names: list[str]) -> LayerDepths:
    """Depths for top-level blocks in registration order (past any single wrapper), the last one the head."""
    parts = [name.split(".") for name in names]
    shared = 0
    while all(len(part) > shared + 1 and part[shared] == parts[0][shared] for part in parts):
        shared += 1
    wrapper = ".".join(parts[0][:shared]) or "(root)"
    # a parameter held by the wrapper itself (not by a child module) joins the wrapper's own block
    blocks = [".".join(part[: shared + 1]) if len(part) > shared + 1 else wrapper for part in parts]
    order = list(dict.fromkeys(blocks))
    depth = {
        name: len(order) - 1 - order.index(block) for name, block in zip(names, blocks, strict=True)
    }
    labels = {len(order) - 1 - index: block for index, block in enumerate(order)}
    return LayerDepths(depth, labels, "blocks")


def _compact(
    names: list[str], depth: dict[str, int], labels: dict[int, str], rule: str
) -> LayerDepths:
    """Renumber used depths as 0, 1, 2, ... keeping their order."""
    used = sorted(set(depth.values()))
    renumber = {level: index for index, level in enumerate(used)}
    return LayerDepths(
        {name: renumber[depth[name]] for name in names},
        {renumber[level]: labels[level] for level in used},
        rule,
    )


def _common_label(members: list[str], names: list[str]) -> str:
    """The modules that hold all of ``members`` and no other of ``names``, each named as deep as
    its members share: BERT's head is "bert.pooler.dense, classifier", not "bert, classifier"."""
    held = set(members)
    others = [name.split(".") for name in names if name not in held]
    holders = _holders([name.split(".") for name in members], others, ())
    return ", ".join(holders[:3]) + (", ..." if len(holders) > 3 else "")


def _holders(
    members: list[list[str]], others: list[list[str]], prefix: tuple[str, ...]
) -> list[str]:
    """Module paths (under ``prefix``) holding every member and none of the others."""
    holders = []
    for top in dict.fromkeys(parts[0] for parts in members):
        inside = [parts[1:] for parts in members if parts[0] == top]
        outside = [parts[1:] for parts in others if parts[0] == top]
        if outside:
            holders += _holders(inside, outside, (*prefix, top))
            continue
        shared: list[str] = []  # the deepest module path the members under top share
        for components in zip(*(parts[:-1] for parts in inside), strict=False):
            if len(set(components)) > 1:
                break
            shared.append(components[0])
        holders.append(".".join((*prefix, top, *shared)))
    return holders
