"""Symbolic error injection: make one step of a solution miscalculate, with no model.

Used by the offline ``sim`` engine and by the RG3 symbolic injector. It works on any step that
:func:`amc.steps.claims` can read: GSM8K reference solutions (whose calculator notes ``<<a*b=c>>`` are kept
consistent with the visible text) and plain model-written steps.

Three kinds of mistake (``mode``):

- ``"result"``: the stated result of a claim changes ("3 * 4 = 12" -> "3 * 4 = 14"). The claim is now false, so
  :func:`amc.steps.first_false_arithmetic` finds the step. The carried value changes (12 -> 14).
- ``"operand"``: a number on the left changes and the result is kept ("3 * 4 = 12" -> "3 * 5 = 12"). The claim is
  false; the carried value is unchanged, so carrying changes nothing later.
- ``"operator"``: one operator is swapped and the result recomputed ("3 * 4 = 12" -> "3 + 4 = 7"). The step stays
  internally consistent (no false claim, the checker sees nothing), but it computes the wrong quantity for the
  problem: a "wrong operation" error. The carried value changes (12 -> 7).

:func:`inject` perturbs step ``k`` and, with ``carry=True``, carries the new value on: later occurrences of the old
value become the new one, later claims are recomputed, and whatever they change is carried on in turn, down to the
final "#### x" / "The answer is x" line.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import sympy

from amc.answers import extract
from amc.steps import Claim, Number, claims, evaluate, join, numbers, operators

__all__ = ["Perturbation", "InjectedPath", "perturb_step", "inject", "MODES"]

MODES = ("result", "operand", "operator")
# Same-style replacements for a swapped operator: "\times" becomes "\div" or "+", never "/".
_SWAPS = {
    "+": ["-", "*"],
    "-": ["+", "*"],
    "*": ["+", "/"],
    "/": ["*", "-"],
    "x": ["+", "/"],
    "×": ["+", "÷"],
    "÷": ["×", "-"],
    "·": ["+", "/"],
    "\\times": ["+", "\\div"],
    "\\cdot": ["+", "\\div"],
    "\\div": ["\\times", "-"],
    "−": ["+", "*"],
}
_ATTEMPTS = 12


@dataclass(frozen=True)
class Perturbation:
    """One perturbed step: its new text, the carried result before and after (as written), what was done."""

    step: str
    old_value: str
    new_value: str
    description: str
    mode: str
    span: tuple[int, int]  # the changed region of the new step; text after it is as before


@dataclass(frozen=True)
class InjectedPath:
    """A solution with an injected error at step ``k`` and the final answer it now states (``None`` if none)."""

    steps: list[str]
    k: int
    final_answer: str | None
    perturbation: Perturbation


@dataclass
class _Unit:
    """One computation of a step: a claim, its twin in a calculator note if any, and every place its result is
    written (visible result, note result, the number echoed after a note)."""

    claim: Claim
    twin: Claim | None
    result_spans: list[tuple[int, int]]
    carried: str | None = field(default=None)  # the recomputed result text, once known (see ``_carry``)


def _units(step: str) -> list[_Unit]:
    found = [c for c in claims(step) if c.true and c.simple]
    visible = [c for c in found if not c.in_note]
    notes = [c for c in found if c.in_note]
    units = []
    for c in visible:
        twin = next((n for n in notes if n.echo_span == c.result_span and n.stated == c.stated), None)
        units.append(_Unit(c, twin, [c.result_span] + ([twin.result_span] if twin else [])))
    for n in notes:
        if not any(u.twin is n for u in units):
            echo = (
                [n.echo_span]
                if n.echo_span and _literal_at(step, n.echo_span) == _literal_at(step, n.result_span)
                else []
            )
            units.append(_Unit(n, None, [n.result_span, *echo]))
    return units


def _same_shape(step: str, a: Claim, b: Claim) -> bool:
    """Whether two claims have the same operands and operators in the same order (a step and its note)."""

    def shape(c: Claim) -> tuple[list, list]:
        inside = c.expr_span[0], c.expr_span[1]
        return (
            [n.value for n in numbers(step) if inside[0] <= n.span[0] < inside[1]],
            [o for (x, _), o in operators(step) if inside[0] <= x < inside[1]],
        )

    return shape(a) == shape(b)


def _lit_value(text: str) -> sympy.Rational:
    return sympy.Rational(re.sub(r"\\{,\\}|[,  ]", "", text))


def _literal_at(text: str, span: tuple[int, int]) -> sympy.Rational | None:
    got = [n for n in numbers(text) if n.span == span]
    return got[0].value if got else None


def _format(value: sympy.Expr, like: Number) -> str:
    """``value`` written the way ``like`` was: same decimals (at least), separators, a leading "." kept."""
    value = sympy.Rational(value) if value.is_Rational else sympy.Rational(str(sympy.N(value, 30)))
    decimals = like.decimals
    if (value * 10**decimals).q != 1:  # more digits needed: exact when short, else rounded to 2 places at least
        exact = next((d for d in range(decimals, 5) if (value * 10**d).q == 1), None)
        decimals = exact if exact is not None else max(decimals, 2)
    text = f"{float(value):,.{decimals}f}" if decimals else f"{int(sympy.floor(value + sympy.Rational(1, 2))):,}"
    if decimals and value.q != 1 and (value * 10**decimals).q == 1:
        whole, frac = divmod(abs(value.p) * 10**decimals // value.q, 10**decimals)
        text = ("-" if value < 0 else "") + f"{whole:,}." + str(frac).zfill(decimals)
    if not like.grouped:
        text = text.replace(",", "")
    elif " " in like.text:
        text = text.replace(",", " ")
    if like.text.startswith(".") and text.startswith("0."):
        text = text[1:]
    return text


def _splice(text: str, edits: dict[tuple[int, int], str]) -> str:
    for (a, b), new in sorted(edits.items(), reverse=True):
        text = text[:a] + new + text[b:]
    return text


def _number_at(step: str, span: tuple[int, int]) -> Number:
    return next(n for n in numbers(step) if n.span == span)


def _new_result(old: sympy.Rational, like: Number, rng: random.Random) -> sympy.Rational:
    """A plausible wrong result: off by a few units of the last digit, or by a factor of ten."""
    step = sympy.Rational(1, 10**like.decimals)
    choice = rng.random()
    if choice < 0.15 and old != 0:
        return old * 10
    delta = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) * step if choice < 0.85 else rng.choice([1, 2]) * step
    return old - delta if rng.random() < 0.4 and old - delta > 0 else old + delta


def _main_claim(step: str, unit: _Unit) -> Claim | None:
    """The claim at the same place as ``unit.claim`` in a rewritten step (spans before the result do not move)."""
    return next(
        (c for c in claims(step) if c.expr_span[0] == unit.claim.expr_span[0] and c.in_note == unit.claim.in_note), None
    )


def _perturb_result(step: str, unit: _Unit, rng: random.Random) -> Perturbation | None:
    like = _number_at(step, unit.claim.result_span)
    for _ in range(_ATTEMPTS):
        new = _new_result(like.value, like, rng)
        text = _format(new, like)
        out = _splice(step, dict.fromkeys(unit.result_spans, text))
        got = _main_claim(out, unit)
        if got is not None and not got.true:
            end = max(b for _, b in unit.result_spans) + len(out) - len(step)
            return Perturbation(
                out,
                like.text,
                text,
                f"result of {unit.claim.expr} changed from {like.text} to {text}",
                "result",
                (unit.claim.span[0], end),
            )
    return None


def _perturb_operand(step: str, unit: _Unit, rng: random.Random) -> Perturbation | None:
    operands = [n for n in numbers(step) if unit.claim.expr_span[0] <= n.span[0] < unit.claim.expr_span[1]]
    twin_ops = [n for n in numbers(step) if unit.twin and unit.twin.expr_span[0] <= n.span[0] < unit.twin.expr_span[1]]
    for _ in range(_ATTEMPTS):
        if not operands:
            return None
        i = rng.randrange(len(operands))
        like = operands[i]
        text = _format(_new_result(like.value, like, rng), like)
        edits = {like.span: text}
        if len(twin_ops) == len(operands) and twin_ops[i].value == like.value:
            edits[twin_ops[i].span] = _format(_lit_value(text), twin_ops[i])
        out = _splice(step, edits)
        got = _main_claim(out, unit)
        if got is not None and not got.true:
            return Perturbation(
                out,
                unit.claim.result,
                unit.claim.result,
                f"operand {like.text} of {unit.claim.expr} changed to {text}",
                "operand",
                (unit.claim.span[0], unit.claim.span[1] + len(out) - len(step)),
            )
    return None


def _perturb_operator(step: str, unit: _Unit, rng: random.Random) -> Perturbation | None:
    c = unit.claim
    ops = [o for o in operators(step) if c.expr_span[0] <= o[0][0] < c.expr_span[1]]
    twin_ops = [o for o in operators(step) if unit.twin and unit.twin.expr_span[0] <= o[0][0] < unit.twin.expr_span[1]]
    like = _number_at(step, c.result_span)
    tries = [(i, sym) for i, (span, _) in enumerate(ops) for sym in _SWAPS.get(step[span[0] : span[1]], [])]
    rng.shuffle(tries)
    for i, sym in tries:
        span = ops[i][0]
        expr = _splice(step, {span: sym})[c.expr_span[0] : c.expr_span[1] + len(sym) - (span[1] - span[0])]
        value = evaluate(expr, c.percent_as_number)
        if value is None or value == c.value or (value < 0 <= c.value) or not value.is_Rational:
            continue
        text = _format(value / c.result_unit, like)
        edits = {span: sym, **dict.fromkeys(unit.result_spans, text)}
        if len(twin_ops) == len(ops):
            edits[twin_ops[i][0]] = {"+": "+", "-": "-"}.get(sym, "*" if sym in ("*", "x", "×", "\\times") else "/")
        out = _splice(step, edits)
        if all(c.true for c in claims(out)) and _main_claim(out, unit) is not None:
            end = max(b for _, b in unit.result_spans) + len(out) - len(step)
            return Perturbation(
                out,
                like.text,
                text,
                f"operator {step[span[0] : span[1]]} in {c.expr} swapped for {sym}; result now {text}",
                "operator",
                (c.span[0], end),
            )
    return None


def perturb_step(step: str, rng: random.Random, mode: str = "result") -> Perturbation | None:
    """Inject one calculation error into ``step``; ``None`` when it holds no true claim that can be perturbed.

    See the module docstring for the three ``mode`` semantics.

    >>> perturb_step("She pays 3 * 4 = $12.", random.Random(0)).step
    'She pays 3 * 4 = $4.'
    """
    if mode not in MODES:
        raise ValueError(f"unknown perturbation mode {mode!r}: expected one of {MODES}")
    units = _units(step)
    rng.shuffle(units)
    do = {"result": _perturb_result, "operand": _perturb_operand, "operator": _perturb_operator}[mode]
    for unit in units:
        if unit.twin is not None and mode != "result" and not _same_shape(step, unit.claim, unit.twin):
            continue  # a note written differently ("80%" vs "80*.01") cannot follow an operand or operator change
        got = do(step, unit, rng)
        if got is not None:
            return got
    return None


def _carry(text: str, start: int, mapping: dict[sympy.Rational, sympy.Rational]) -> str:
    """``text`` rewritten from ``start`` on to follow the changed values in ``mapping`` (old -> new, as written).

    Numbers equal to an old value become the new one; each true claim whose operands changed gets its result
    recomputed, and that change joins ``mapping`` so it is carried on too (within this text and by the caller).
    """
    units = _units(text)
    slots = {span: u for u in units for span in u.result_spans}
    edits: dict[tuple[int, int], str] = {}
    for n in sorted(numbers(text), key=lambda n: n.span):
        if n.span[0] < start or n.span in edits:
            continue
        unit = slots.get(n.span)
        if unit is None:
            if n.value in mapping:
                edits[n.span] = _format(mapping[n.value], n)
            continue
        c = unit.claim
        inner = {
            (a - c.expr_span[0], b - c.expr_span[0]): t
            for (a, b), t in edits.items()
            if c.expr_span[0] <= a < c.expr_span[1]
        }
        value = evaluate(_splice(text[c.expr_span[0] : c.expr_span[1]], inner), c.percent_as_number) if inner else None
        if value is None or value == c.value:
            continue
        new_text = _format(value / c.result_unit, n)
        mapping[c.stated / c.result_unit] = _lit_value(new_text)
        for span in unit.result_spans:
            if span[0] >= start:
                edits[span] = _format(_lit_value(new_text), _number_at(text, span))
    return _splice(text, edits)


def inject(steps: list[str], k: int, rng: random.Random, carry: bool, mode: str = "result") -> InjectedPath | None:
    """Perturb step ``k`` of a solution (see :func:`perturb_step`); ``None`` when it holds no usable claim.

    With ``carry=False`` the later steps stay as they were (a local slip the solution then ignores); with
    ``carry=True`` the wrong value is carried through them consistently, so the final answer usually changes.

    >>> path = inject(["3 * 4 = 12 apples.", "12 + 1 = 13", "#### 13"], 0, random.Random(0), carry=True)
    >>> path.steps, path.final_answer
    (['3 * 4 = 4 apples.', '4 + 1 = 5', '#### 5'], '5')
    """
    if not 0 <= k < len(steps):
        raise IndexError(f"step {k} out of range for a solution of {len(steps)} steps")
    p = perturb_step(steps[k], rng, mode)
    if p is None:
        return None
    new = list(steps)
    new[k] = p.step
    if carry and p.old_value != p.new_value:
        mapping = {_lit_value(p.old_value): _lit_value(p.new_value)}
        new[k] = _carry(new[k], p.span[1], mapping)
        for j in range(k + 1, len(new)):
            new[j] = _carry(new[j], 0, mapping)
    return InjectedPath(new, k, extract(join(new)), p)
