"""Spec strings: ``warmup(500) >> cosine(peak=3e-4, steps=10000)`` to a Schedule and back, without eval.

The text is parsed with :mod:`ast` (which never runs it) and only these forms are accepted: a call
of a known schedule name with literal arguments (numbers, strings, True/False/None, lists, nested
specs), and ``>>`` between specs. ``repr(schedule)`` is always a spec that parses back to an equal one.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from collections.abc import Callable
from typing import Any

from lrkit.schedules import combinators, composites, kinds
from lrkit.schedules.base import Schedule

# spec name -> the class or recipe it calls
NAMES: dict[str, Callable[..., Schedule]] = {
    cls.kind: cls
    for cls in (
        kinds.Constant,
        kinds.Exponential,
        kinds.MultiStep,
        kinds.Cosine,
        kinds.CosineRestarts,
        kinds.Linear,
        kinds.Polynomial,
        kinds.OneMinusSqrt,
        kinds.InverseSqrt,
        kinds.InverseTime,
        kinds.Cyclic,
        combinators.Warmup,
        combinators.Overlay,
        combinators.Scale,
        combinators.Clip,
        combinators.Noise,
    )
} | {
    "step_decay": composites.step_decay,
    "warmup_cosine": composites.warmup_cosine,
    "wsd": composites.wsd,
    "one_cycle": composites.one_cycle,
    "adam_warmup": composites.adam_warmup,
}

MAX_LENGTH = 10_000


def parse(spec: str | Schedule, *, name: str = "spec") -> Schedule:
    """The schedule a spec string describes; ``ValueError`` says what is wrong and where.

    A Schedule passes through. Either way the result has a value at every step (a warmup with
    nothing after it to rise to is refused here, not at the first evaluation inside a jit or fit).
    """
    if isinstance(spec, Schedule):
        return combinators.check_complete(spec)
    if not isinstance(spec, str):
        raise TypeError(f"{name} must be a Schedule or a spec string, got {spec!r} ({type(spec).__name__})")
    if not spec.strip():
        raise ValueError(f"{name} must describe a schedule, got an empty string")
    if len(spec) > MAX_LENGTH:
        raise ValueError(f"{name} must be at most {MAX_LENGTH} characters, got {len(spec)}")
    spec = spec.strip()
    try:
        tree = ast.parse(_bracketed(spec), mode="eval")
        result = _node(tree.body, spec)
    except SyntaxError as error:
        column = (error.offset or 0) - 1  # minus the opening bracket
        where = f" at column {column}" if error.lineno == 1 and column > 0 else ""
        comment = _comment(spec)
        if comment is not None:  # it runs to the end of the line, over the bracket closing the spec
            raise ValueError(f"spec {spec!r} is malformed: a comment ('#' at column {comment}) cannot end a spec") from None
        raise ValueError(f"spec {spec!r} is malformed{where}: {error.msg}") from None
    except (RecursionError, MemoryError):  # brackets or signs nested thousands deep
        raise ValueError(f"spec {_short(spec)!r} is nested too deeply to read") from None
    if not isinstance(result, Schedule):
        raise ValueError(f"spec {spec!r} must describe a schedule, got the value {result!r}")
    return combinators.check_complete(result)


def _node(node: ast.AST, spec: str) -> Any:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
        left, right = _node(node.left, spec), _node(node.right, spec)
        if not (isinstance(left, Schedule) and isinstance(right, Schedule)):
            raise ValueError(f"spec {spec!r}: '>>' joins schedules, got {_text(node, spec)!r}")
        return left >> right
    if isinstance(node, ast.Call):
        return _call(node, spec)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _node(node.operand, spec)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return tuple(_node(item, spec) for item in node.elts)
    if isinstance(node, ast.Name):
        raise ValueError(f"spec {spec!r}: unknown value {node.id!r}; strings need quotes, e.g. 'linear'")
    raise ValueError(f"spec {spec!r}: {_text(node, spec)!r} is not allowed; write name(arg=value, ...) and '>>'")


def _call(node: ast.Call, spec: str) -> Schedule:
    if not isinstance(node.func, ast.Name):
        raise ValueError(f"spec {spec!r}: {_text(node.func, spec)!r} is not a schedule name")
    name = node.func.id
    factory = NAMES.get(name)
    if factory is None:
        known = ", ".join(sorted(NAMES))
        raise ValueError(f"spec {spec!r}: unknown schedule {name!r}; known: {known}")
    if any(isinstance(arg, ast.Starred) for arg in node.args) or any(k.arg is None for k in node.keywords):
        raise ValueError(f"spec {spec!r}: '*' and '**' are not allowed in {name}(...)")
    seen: set[str] = set()
    for keyword in node.keywords:
        if keyword.arg in seen:  # ast accepts a repeated keyword; a call (and the spec) must not
            raise ValueError(f"spec {spec!r}: {name}(...) got {keyword.arg}= twice")
        seen.add(keyword.arg)
    args = [_node(arg, spec) for arg in node.args]
    keywords = {keyword.arg: _node(keyword.value, spec) for keyword in node.keywords}
    try:
        return factory(*args, **keywords)
    except TypeError as error:
        if "argument" in str(error):  # a wrong signature: say it in the spec's terms
            problem = str(error).split(") ", 1)[-1]
            allowed = ", ".join(inspect.signature(factory).parameters)
            raise ValueError(f"spec {spec!r}: {name}(...) {problem}; its arguments are {allowed}") from None
        raise


def _comment(spec: str) -> int | None:
    """The column of a comment on the last line of ``spec`` (a ``#`` outside quotes), or None."""
    lines, found = spec.count("\n") + 1, None
    try:
        for token in tokenize.generate_tokens(io.StringIO(spec).readline):
            if token.type == tokenize.COMMENT and token.start[0] == lines:
                found = token.start[1]
    except (tokenize.TokenError, SyntaxError):  # an unclosed bracket: what came before still counts
        pass
    return found


def _short(spec: str, limit: int = 80) -> str:
    return spec if len(spec) <= limit else f"{spec[: limit - 3]}..."


def _bracketed(spec: str) -> str:
    return f"({spec})"  # brackets let a spec span lines


def _text(node: ast.AST, spec: str) -> str:
    return ast.get_source_segment(_bracketed(spec), node) or ast.dump(node)
