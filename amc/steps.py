"""Steps of a solution, and the arithmetic they claim.

A step is one non-empty line (the AutoMathCritique rule), for actor output, annotator input and critic prompts
alike. ``claims`` finds the equations a step states between numbers ("3 * 4 = 12", "\\frac{1}{3} \\times 18 = 6",
"$3.5 * 4,000 = $14,000", GSM8K calculator notes "<<3*4=12>>") and checks each with exact sympy arithmetic, so
``first_false_arithmetic`` can point at the first step that miscalculates without any model.

It errs towards silence: an equation touching a variable ("2x + 3 = 7"), a word it cannot read, or an expression
too big to evaluate cheaply (huge powers, factorials) is no claim at all, because a false alarm costs more than a
miss when the checker labels or filters data. Evaluation is bounded by cheap guards and by deterministic budgets
(at most ``MAX_STEP_TOKENS`` tokens read and ``MAX_EQUATIONS`` equations judged per step), never by the clock, so
a step gets the same claims on an idle machine and on a loaded one; no signals, so it is safe in threads. A
wall-clock guard (``LAST_RESORT_S``) remains as a last resort only: a step that outlives it is *undecided* and
raises :class:`CheckTimeout` instead of returning fewer claims; the stages turn that into a ``grading_undecided``
reject row, never into a verdict.

>>> [c.true for c in claims("She pays 3 x $4.50 = $13.50, then 13.50 + 2 = 16.")]
[True, False]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import sympy

from amc._arith import _Invalid, _parse, _Refused, _streams, _Tok, _tokenize
from amc.errors import AmcError

__all__ = [
    "split",
    "join",
    "solution_steps",
    "Claim",
    "Number",
    "claims",
    "numbers",
    "operators",
    "evaluate",
    "first_false_arithmetic",
]


def split(text: str) -> list[str]:
    """One step per non-empty line, each stripped.

    >>> split("First, 2 + 2 = 4.\\n\\n  So the answer is 4. ")
    ['First, 2 + 2 = 4.', 'So the answer is 4.']
    """
    return [line.strip() for line in text.splitlines() if line.strip()]


def join(steps: list[str]) -> str:
    """The inverse of :func:`split` for stripped, non-empty steps: one per line."""
    return "\n".join(steps)


_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
_ASY = re.compile(r"\[asy\].*?\[/asy\]", re.DOTALL)  # MATH's Asymptote figures: drawing code, not reasoning


def solution_steps(solution: str) -> list[str]:
    r"""A reference solution as the steps an actor would write: GSM8K calculator notes (``<<48/2=24>>``) dropped,
    since no actor writes them, MATH's ``[asy]`` figure code dropped, and the ``#### answer`` line left out.

    >>> solution_steps("48/2 = <<48/2=24>>24\n#### 24")
    ['48/2 = 24']
    """
    text = _ASY.sub("", _CALCULATOR_NOTE.sub("", solution))
    return [s for s in split(text) if not s.startswith("####")]


# ------------------------------------------------------------------------------------------------ claims

_QUOTIENT_RE = re.compile(r"remainder|quotient|\bR\s*\d|\bwhole\b|\bfull\b|\bcomplete\b|\bleft\b|leftover", re.I)
_CENTS_RE = re.compile(r"\s*(?:cents?\b|¢)")
# A word joining its neighbour to the expression after it: "1 and 1/4 cup = ..." is not "1/4 = ...".
_CONNECTIVES = {"and", "plus", "minus", "times", "by", "of", "over", "than", "with"}
_FUNCS = {
    "\\sin",
    "\\cos",
    "\\tan",
    "\\cot",
    "\\sec",
    "\\csc",
    "\\log",
    "\\ln",
    "\\lg",
    "\\exp",
    "\\max",
    "\\min",
    "\\gcd",
    "\\lcm",
    "\\det",
    "\\binom",
    "\\arcsin",
    "\\arccos",
    "\\arctan",
    "\\overline",
    "\\bar",
    "\\hat",
    "\\vec",
    "\\pm",
    "\\mp",
    "\\mathbb",
    "\\lfloor",
    "\\lceil",
    "\\pmod",
    "\\bmod",
    "\\mod",
    "\\operatorname",
}
_ARITH = {"NUM", "OP", "LP", "RP", "FACT", "FRAC", "SQRT", "SUP"}
_MAX_RUN = 120  # tokens on one side of "=": longer runs are not hand-written arithmetic
MAX_STEP_TOKENS = 4096  # tokens read per step (a step is one line; real ones have well under 200)
MAX_EQUATIONS = 256  # "=" signs judged per token stream of a step
LAST_RESORT_S = 30.0  # wall-clock guard of one step's check; the budgets above keep every step far below it


@dataclass(frozen=True)
class Number:
    """A number literal in a step: its text, where it is, and its value as written (no % or scale applied)."""

    text: str
    span: tuple[int, int]
    value: sympy.Rational
    decimals: int
    grouped: bool
    percent: bool
    in_note: bool


@dataclass(frozen=True)
class Claim:
    """An equation a step states between numbers, and whether it holds.

    ``expr`` / ``result`` are the texts at ``expr_span`` / ``result_span`` of the step; ``span`` covers both.
    ``value`` is the left side evaluated exactly; ``stated`` is what the result says in the same units, and
    ``true`` means they agree (within the rounding the result shows: 10/3 = 3.33 is true).
    A ``simple`` result is one unsigned number literal, and then ``stated == Rational(result) * result_unit``
    (``result_unit`` is 1/100 for "25%" read as 0.25, 10**6 for "2 million"); ``percent_as_number`` says how
    a % on the left was read. A claim inside a GSM8K calculator note has ``in_note`` and ``echo_span``: the
    visible number right after the note, which states the same result.
    """

    expr: str
    result: str
    span: tuple[int, int]
    true: bool
    expr_span: tuple[int, int] = (0, 0)
    result_span: tuple[int, int] = (0, 0)
    value: sympy.Expr = field(default=sympy.Integer(0), compare=False)
    stated: sympy.Expr = field(default=sympy.Integer(0), compare=False)
    simple: bool = True
    in_note: bool = False
    echo_span: tuple[int, int] | None = None
    percent_as_number: bool = False
    result_unit: sympy.Expr = field(default=sympy.Integer(1), compare=False)


def _glued_identifier(tok: _Tok | None, neighbour_spaced: bool) -> bool:
    """Whether ``tok`` beside an expression makes it part of something unreadable (a variable, a function)."""
    if tok is None:
        return False
    if tok.kind == "VAR" or tok.text in _FUNCS or tok.text in ("_", "'", "|"):
        return True
    return (tok.cmd or tok.kind == "WORD" and len(tok.text) == 1) and not neighbour_spaced


def _close(
    value: sympy.Expr, target: sympy.Expr, decimals: int, approx: bool, unit: sympy.Expr, rel: sympy.Expr = 0
) -> bool:
    """Exact equality, or agreement within the last decimal the stated result shows (10/3 = 3.33, 2/3 = 0.67),
    or within ``rel`` (relative) when the left side holds rounded decimals itself ("(2.8284)^2 = 8")."""
    diff = value - target
    if diff == 0:
        return True
    size = abs(diff) if diff.is_Rational else abs(diff.evalf(50))
    if not diff.is_Rational and size < sympy.Float("1e-40"):
        return True  # equal irrational forms that sympy leaves apart: (3 + sqrt(5))^2 = 14 + 6 sqrt(5)
    if rel and size <= rel * abs(target):
        return True
    if decimals == 0 and not approx:
        return False
    if (value / unit * 10**decimals).is_Integer and not approx:
        return False  # the exact value fits in the digits shown, so other digits there are wrong
    return bool(size < abs(unit) * sympy.Rational(1, 10 ** min(decimals, 12)))


def _fraction_at(stream: list[_Tok], i: int) -> bool:
    """Whether a fraction starts at ``stream[i]``: "1/4", "(2/3)", "\\frac{1}{4}" (for "1 and 1/4")."""
    i += i < len(stream) and stream[i].kind == "LP"
    return i < len(stream) and (
        stream[i].kind == "FRAC"
        or stream[i].kind == "NUM"
        and i + 1 < len(stream)
        and stream[i + 1].op == "/"
        and not stream[i + 1].spaced
    )


def _left_side(stream: list[_Tok], e: int, deadline: float) -> list[_Tok] | None:
    """The expression left of the "=" at ``stream[e]``: the longest well-formed suffix of the arithmetic run
    before it ("Step 1) 3 + 4" -> "3 + 4") with at least one operation; ``None`` if it is not readable."""
    j = e
    while j > 0 and stream[j - 1].kind in _ARITH and e - j < _MAX_RUN:
        j -= 1
    if j == e or (j > 0 and stream[j - 1].kind in _ARITH):
        return None
    left = stream[j:e]
    for s in range(len(left)):
        _guard(deadline)
        try:
            ops = _parse(left[s:])[1]
            break
        except _Invalid:
            continue
        except _Refused:
            return None
    else:
        return None
    first, before = left[s], left[s - 1] if s > 0 else (stream[j - 1] if j > 0 else None)
    if ops == 0 or before is None:
        return None if ops == 0 else left
    if before.kind in ("OP", "FRAC", "SQRT") or (s and first.kind == "OP") or (before.kind == "LP" and s >= 2):
        return None  # an expression that goes on to the left: "2x + 3 = 7", "$100+($100*(10/100) = 110"
    if before.kind == "RP" and ("}" in (before.text, first.text) or not first.spaced):
        return None  # the tail of a bigger expression: "\frac{x}{2} + 7 = 43"
    if before.kind == "NUM" and first.kind == "NUM" or _glued_identifier(before, first.spaced):
        return None  # "$100 000 x 10/100", "x_1 + 3", "2\pi + 3"
    if first.kind in ("OP", "LP") and (
        before.kind == "VAR" or before.cmd or before.kind == "WORD" and (first.op or len(before.text) == 1)
    ):
        return None  # "f(2 + 1) = 9", "\sin(30)", "the total - 3 = 4"
    two_back = stream[j - 2] if before is stream[j - 1] and j >= 2 else None
    if (
        before.text.lower() in _CONNECTIVES
        and two_back is not None
        and two_back.kind in ("NUM", "RP", "WORD")
        and (_fraction_at(stream, j + s) or before.text.lower() != "and")
    ):
        return None  # "1 and 1/4 cup = 1.25 cups" is not "1/4 = 1.25"; "2 times 3 + 1 = 7" is not "3 + 1 = 7"
    return left[s:]


def _right_side(stream: list[_Tok], e: int) -> tuple[list[_Tok], int] | None:
    """(tokens, index of the first number) right of the "=" at ``stream[e]``.

    The first number may open a longer expression ("= 12 + 2 = 14" runs on) and both count; a right side that
    runs into something unreadable ("= 1.5x", "= 1 \\times x", "= 5 and 2/3") gives ``None``.
    """
    k = e + 1
    while k < len(stream) and stream[k].kind in _ARITH and k - e <= _MAX_RUN:
        k += 1
    right = stream[e + 1 : k]
    lead = next((i for i, t in enumerate(right) if t.kind != "LP"), len(right))  # "= \boxed{43000}"
    first = lead + (lead < len(right) and right[lead].op == "-")
    if first >= len(right) or right[first].kind != "NUM" or (right[0].kind == "OP" and right[0].op != "-"):
        return None
    p = len(right)
    try:
        while p > first:
            try:
                _parse(right[:p])
                break
            except _Invalid:
                p -= 1
    except _Refused:
        return None
    after = right[p] if p < len(right) else (stream[k] if k < len(stream) else None)
    goes_on = p < len(right) and after.kind != "RP" and (after.kind != "LP" or p + 1 < len(right) or not after.spaced)
    if (
        p <= first
        or goes_on
        or _glued_identifier(after, after is None or after.spaced)
        or (after is not None and (after.kind == "OP" or after.text == "and" and _fraction_at(stream, k + 1)))
    ):
        return None
    return right[:p], first


def _judge(text: str, left: list[_Tok], right: list[_Tok], first: int) -> Claim | None:
    """Evaluate ``left`` and compare it with the first number of ``right`` or with any longer prefix of it."""
    if any(t.op in "+-" for t in left if t.kind == "OP") and len({t.unit for t in left if t.unit}) > 1:
        return None  # "4 pounds - 6 ounces = 58 ounces" converts units we do not know
    num = right[first]
    sign = -1 if first and right[first - 1].op == "-" else 1
    bases = [sympy.Rational(1, 100)] if num.percent or _CENTS_RE.match(text, num.stop) else []
    mults = [b * num.scale for b in [*bases, sympy.Integer(1)]] + ([sympy.Integer(1)] if num.scale > 1 else [])
    places = max((t.decimals for t in left if t.kind == "NUM"), default=0)
    rel = sympy.Rational(1, 10**places) if places >= 3 else 0
    default = None
    try:
        for raw in (False, True) if any(t.percent for t in left) else (False,):
            value = _parse(left, raw)[0]
            default = default or (value, raw)
            for mult in mults:
                if _close(value, sign * num.value * mult, num.decimals, num.approx, mult, rel):
                    return _make(text, left, right[: first + 1], num, True, value, sign * num.value * mult, mult, raw)
            for q in range(len(right), first + 1, -1):  # "= 12 + 2 = 14", "= 1/3 of $150", "= \frac{3}{2}"
                if right[q - 1].kind in ("NUM", "RP", "FACT", "SUP"):
                    try:
                        whole = _parse(right[:q], raw)[0]
                    except _Invalid:
                        continue
                    if _close(value, whole, 0, False, sympy.Integer(1), rel):
                        return _make(text, left, right[:q], None, True, value, whole, sympy.Integer(1), raw)
    except (_Refused, _Invalid, TypeError, ValueError):
        return None
    value, raw = default
    stated = sign * num.value * mults[0]
    # "410 \div 333 = 1 with a remainder of 77", "36/5 = 7 full pens": integer division, said so in words.
    floor_div = (
        value.is_Rational
        and not value.is_Integer
        and stated == sympy.floor(value)
        and bool(_QUOTIENT_RE.search(text, right[-1].end, right[-1].end + 80))
    )
    return _make(text, left, right[: first + 1], num, floor_div, value, stated, mults[0], raw)


def _make(
    text: str,
    left: list[_Tok],
    right: list[_Tok],
    num: _Tok | None,
    true: bool,
    value: sympy.Expr,
    stated: sympy.Expr,
    unit: sympy.Expr,
    raw: bool,
) -> Claim:
    expr_span = (left[0].start, max(left[-1].end, left[-1].stop))
    res_span = (num.start, num.end) if num is not None else (right[0].start, max(right[-1].end, right[-1].stop))
    simple = num is not None and num.literal and stated == num.value * unit
    return Claim(
        expr=text[expr_span[0] : expr_span[1]],
        result=text[res_span[0] : res_span[1]],
        span=(expr_span[0], res_span[1]),
        true=true,
        expr_span=expr_span,
        result_span=res_span,
        value=value,
        stated=stated,
        simple=simple,
        percent_as_number=raw,
        result_unit=unit,
        in_note=left[0].note >= 0,
    )


def _stream_claims(stream: list[_Tok], text: str, deadline: float) -> list[Claim]:
    """Claims of one token stream: "a op b = c" chains, and restatements of a named quantity ("Total cost =
    20 + 23. Total cost = 45."), which models write as often as chains. Single letters are variables, re-bound
    freely ("x = -1 or x = 1"), so a name needs a word of three letters or more."""
    found: list[Claim] = []
    named: dict[tuple[str, ...], list[_Tok]] = {}
    equations = 0
    for e, t in enumerate(stream):
        _guard(deadline)
        if t.kind != "EQ":
            continue
        equations += 1
        if equations > MAX_EQUATIONS:  # a deterministic budget: the rest of an absurd step is not judged
            break
        left, got = _left_side(stream, e, deadline), _right_side(stream, e)
        if got is not None and left is not None:
            if (c := _judge(text, left, *got)) is not None:
                found.append(c)
            continue
        j = e
        while j > 0 and e - j < 6 and stream[j - 1].kind == "WORD":
            j -= 1
        name = tuple(w.text.lower() for w in stream[j:e])
        end = e + 1 + (len(got[0]) if got else 0)
        if (
            got is None
            or not any(len(w) > 2 for w in name)
            or (j and stream[j - 1].kind in _ARITH)
            or (end < len(stream) and stream[end].kind == "EQ")
        ):
            continue
        if name in named and (c := _judge(text, named[name], *got)) is not None:
            found.append(c)
        try:
            binds = _parse(got[0])[1] > 0
        except (_Invalid, _Refused):
            binds = False
        if binds:
            named[name] = got[0]
        else:
            named.pop(name, None)
    return found


class CheckTimeout(AmcError):
    """The undecided status of a step check: the step outlived the wall-clock guard of :func:`claims` (a last
    resort the budgets should never reach). Never fewer claims: a stage catches it and rejects the row as
    ``grading_undecided``; anywhere else it is one clear line."""


def _guard(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise CheckTimeout(
            "the arithmetic check of a step outlived its last-resort guard (undecided); please report the step as a bug"
        )


def claims(step: str, timeout: float | None = None) -> list[Claim]:
    """The arithmetic equations ``step`` states, in order (visible text first, then calculator notes).

    What is checked is fixed by budgets, not by time: the first ``MAX_STEP_TOKENS`` tokens of the step and its
    first ``MAX_EQUATIONS`` equations per stream; an absurd step loses the rest, the same way on every machine.
    ``timeout`` (default ``LAST_RESORT_S``, read at call time) is a last-resort wall-clock guard: past it, the
    step is undecided and :class:`CheckTimeout` is raised (never fewer claims).

    >>> [(c.expr, c.result, c.true) for c in claims("20% of 50 = 10, and 10/3 = 3.33")]
    [('20% of 50', '10', True), ('10/3', '3.33', True)]
    """
    # The same step is checked several times in a build (the symbolic strategy, the sim engine, the critique
    # stage's hints): its claims are remembered. Claims are frozen and depend on the text alone; a check that
    # outlives the guard raises and is not remembered. Under a guard other than the standard one (tests force
    # it to 0) every call computes, so a forced guard still stops every step.
    memo = timeout is None and LAST_RESORT_S == _STANDARD_GUARD_S
    if memo and (hit := _CLAIMS_MEMO.get(step)) is not None:
        return list(hit)
    deadline = time.monotonic() + (LAST_RESORT_S if timeout is None else timeout)
    found: list[Claim] = []
    for stream, note, echo in _streams(step, max_tokens=MAX_STEP_TOKENS):
        for c in _stream_claims(stream, step, deadline):
            found.append(c if note < 0 else replace(c, in_note=True, echo_span=echo))
    if memo:
        _remember(_CLAIMS_MEMO, step, tuple(found))
    return found


_STANDARD_GUARD_S = LAST_RESORT_S
_MEMO_SIZE = 4096  # steps remembered (a shard's paths hold a few hundred distinct steps)
_CLAIMS_MEMO: dict[str, tuple[Claim, ...]] = {}
_NUMBERS_MEMO: dict[str, tuple[Number, ...]] = {}


def _remember(memo: dict, key: str, value: tuple) -> None:
    if len(memo) >= _MEMO_SIZE:
        del memo[next(iter(memo))]  # the oldest entry first: dicts keep insertion order
    memo[key] = value


def numbers(text: str) -> list[Number]:
    """Every number literal of ``text`` (visible and in calculator notes), in order of position."""
    if (hit := _NUMBERS_MEMO.get(text)) is None:
        hit = tuple(
            Number(t.text, (t.start, t.end), t.value, t.decimals, t.grouped, t.percent, t.note >= 0)
            for t in _tokenize(text)
            if t.kind == "NUM" and t.literal
        )
        _remember(_NUMBERS_MEMO, text, hit)
    return list(hit)


def operators(text: str) -> list[tuple[tuple[int, int], str]]:
    """Spans and normalised symbols ("+", "-", "*", "/") of the arithmetic operators of ``text``, by position."""
    ops = [((t.start, t.end), t.op) for stream, _, _ in _streams(text) for t in stream if t.kind == "OP"]
    return sorted(o for o in ops if o[1] in "+-*/")


def evaluate(expr: str, percent_as_number: bool = False) -> sympy.Expr | None:
    """The exact value of an arithmetic expression written as in a step; ``None`` if unreadable or too big.

    >>> evaluate("\\\\frac{1}{3} \\\\times 18"), evaluate("$3.50 x 4"), evaluate("9^9^9^9")
    (6, 14, None)
    """
    stream = _streams(expr)[0][0]
    try:
        return _parse(stream, percent_as_number)[0] if stream else None
    except (_Invalid, _Refused):
        return None


def first_false_arithmetic(steps: list[str], timeout_per_step: float | None = None) -> int | None:
    """Index of the first step stating a false arithmetic equation (e.g. "3 * 15 = 35"); ``None`` if none does.
    Raises :class:`CheckTimeout` (undecided) when a step outlives the last-resort guard.

    >>> first_false_arithmetic(["2 + 2 = 4", "4 * 3 = 13", "13 - 1 = 11"])
    1
    """
    for i, step in enumerate(steps):
        if any(not c.true for c in claims(step, timeout=timeout_per_step)):
            return i
    return None
