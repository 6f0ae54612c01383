"""Seeded multi-step arithmetic word problems with exactly checked answers and one-equation-per-line solutions.

Difficulty is the number of arithmetic steps. Each problem follows one quantity through a short story (shopping,
travel, baking, saving): every step applies one operation (+ - * /) to the previous result and a new number, and
the solution states it as a plain equation ("... so she has 3 * 12 = 36 pencils."). Numbers are chosen so every
result is a positive integer (divisions only by exact divisors), each result is computed with exact fractions
and the whole chain is re-evaluated as one expression, so a wrong reference answer cannot be generated.

Problem ``i`` draws from its own generator seeded by (seed, i): the same seed gives byte-identical problems, and
asking for more problems never changes the first ones.
"""

from __future__ import annotations

import ast
import operator
import random
from dataclasses import dataclass, field
from fractions import Fraction

from amc.config import SyntheticSource
from amc.errors import ConfigError
from amc.records import Problem

# Results stay below this, so problems read like grade-school arithmetic and never overflow a model's patience.
_MAX_VALUE = 100_000


@dataclass(frozen=True)
class Op:
    """One step: ``question`` tells the story, ``step`` states the equation; ``to`` is the phase it leads to.

    Templates use {x} (previous result), {n} (the new number), {r} (the result) and the pronouns {Sub} {sub}
    {obj} {pos}. ``lo``..``hi`` bound {n}; for division only exact divisors in that range are drawn.
    """

    sym: str
    question: str
    step: str
    lo: int
    hi: int
    to: str | None = None


@dataclass(frozen=True)
class Phase:
    """What the running quantity means right now, the question that asks for it, and what can happen to it."""

    ask: str
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Theme:
    """A story: its first step multiplies two given numbers (a * b), then phases follow one another."""

    start_question: str
    start_step: str
    a: tuple[int, int]
    b: tuple[int, int]
    phase: str
    phases: dict[str, Phase] = field(default_factory=dict)


THEMES: dict[str, Theme] = {
    "shopping": Theme(
        start_question="{name} buys {a} packs of pencils with {b} pencils in each pack.",
        start_step="{Sub} buys {a} packs of {b} pencils, so {sub} has {a} * {b} = {r} pencils.",
        a=(2, 9),
        b=(4, 24),
        phase="pencils",
        phases={
            "pencils": Phase(
                "How many pencils does {sub} have now?",
                (
                    Op(
                        "+",
                        "A classmate gives {obj} {n} more pencils.",
                        "A classmate gives {obj} {n} more, so {sub} has {x} + {n} = {r} pencils.",
                        2,
                        30,
                    ),
                    Op(
                        "-",
                        "{Sub} gives {n} pencils to {pos} brother.",
                        "{Sub} gives away {n}, so {sub} has {x} - {n} = {r} pencils left.",
                        2,
                        40,
                    ),
                    Op(
                        "*",
                        "Each pencil costs {n} dollars, and {sub} pays for all of them.",
                        "Each pencil costs {n} dollars, so the pencils cost {x} * {n} = {r} dollars.",
                        2,
                        6,
                        "cost",
                    ),
                    Op(
                        "/",
                        "{Sub} shares the pencils equally among {n} boxes.",
                        "{Sub} splits {x} pencils into {n} boxes, so each box holds {x} / {n} = {r} pencils.",
                        2,
                        12,
                        "box",
                    ),
                ),
            ),
            "cost": Phase(
                "How many dollars does {sub} pay?",
                (
                    Op(
                        "+",
                        "{Sub} also buys a notebook for {n} dollars.",
                        "Adding the notebook, {sub} pays {x} + {n} = {r} dollars.",
                        2,
                        15,
                    ),
                    Op(
                        "-",
                        "A coupon takes {n} dollars off the total.",
                        "The coupon saves {n}, so {sub} pays {x} - {n} = {r} dollars.",
                        2,
                        20,
                    ),
                    Op(
                        "/",
                        "{Sub} splits the bill equally among {n} friends, counting {obj}self.",
                        "Split {n} ways, each friend pays {x} / {n} = {r} dollars.",
                        2,
                        8,
                        "share",
                    ),
                ),
            ),
            "box": Phase(
                "How many pencils are in each box?",
                (
                    Op(
                        "+",
                        "{Sub} then adds {n} more pencils to each box.",
                        "Each box then holds {x} + {n} = {r} pencils.",
                        2,
                        12,
                    ),
                    Op(
                        "-",
                        "{Sub} then takes {n} pencils out of each box.",
                        "Each box then holds {x} - {n} = {r} pencils.",
                        2,
                        10,
                    ),
                ),
            ),
            "share": Phase(
                "How many dollars does each friend pay?",
                (
                    Op(
                        "+",
                        "Each friend also pays a {n} dollar delivery fee.",
                        "With the fee, each friend pays {x} + {n} = {r} dollars.",
                        2,
                        9,
                    ),
                    Op(
                        "-",
                        "A store card then takes {n} dollars off each share.",
                        "With the store card, each friend pays {x} - {n} = {r} dollars.",
                        2,
                        9,
                    ),
                ),
            ),
        },
    ),
    "travel": Theme(
        start_question="{name} drives for {a} hours at {b} kilometers per hour.",
        start_step="{Sub} drives {a} hours at {b} kilometers per hour, so {sub} covers {a} * {b} = {r} kilometers.",
        a=(2, 8),
        b=(40, 90),
        phase="distance",
        phases={
            "distance": Phase(
                "How many kilometers does {sub} travel in total?",
                (
                    Op(
                        "+",
                        "On the way {sub} takes a detour of {n} kilometers.",
                        "The detour adds {n}, so the trip is {x} + {n} = {r} kilometers.",
                        5,
                        60,
                    ),
                    Op(
                        "-",
                        "A shortcut saves {obj} {n} kilometers.",
                        "The shortcut saves {n}, so the trip is {x} - {n} = {r} kilometers.",
                        5,
                        50,
                    ),
                    Op(
                        "*",
                        "{Sub} makes the same trip {n} times this month.",
                        "Over {n} trips {sub} drives {x} * {n} = {r} kilometers.",
                        2,
                        5,
                    ),
                    Op(
                        "/",
                        "{Pos} car uses one liter of fuel for every {n} kilometers.",
                        "The car uses {x} / {n} = {r} liters of fuel.",
                        5,
                        20,
                        "fuel",
                    ),
                ),
            ),
            "fuel": Phase(
                "How many liters of fuel does {sub} buy?",
                (
                    Op(
                        "+",
                        "{Sub} also fills a {n} liter spare can.",
                        "With the spare can, {sub} buys {x} + {n} = {r} liters.",
                        2,
                        20,
                    ),
                    Op(
                        "*",
                        "Fuel costs {n} dollars per liter.",
                        "The fuel costs {x} * {n} = {r} dollars.",
                        2,
                        3,
                        "bill",
                    ),
                ),
            ),
            "bill": Phase(
                "How many dollars does {sub} pay?",
                (
                    Op(
                        "+",
                        "{Sub} also pays a {n} dollar toll.",
                        "With the toll, {sub} pays {x} + {n} = {r} dollars.",
                        2,
                        25,
                    ),
                    Op(
                        "-",
                        "A discount card takes {n} dollars off.",
                        "With the discount, {sub} pays {x} - {n} = {r} dollars.",
                        2,
                        20,
                    ),
                    Op(
                        "/",
                        "The cost is shared equally by {n} travellers.",
                        "Each traveller pays {x} / {n} = {r} dollars.",
                        2,
                        6,
                        "each",
                    ),
                ),
            ),
            "each": Phase(
                "How many dollars does each traveller pay?",
                (
                    Op(
                        "+",
                        "Each traveller also buys a {n} dollar snack.",
                        "With the snack, each traveller pays {x} + {n} = {r} dollars.",
                        2,
                        9,
                    ),
                    Op(
                        "-",
                        "A travel voucher then covers {n} dollars of each share.",
                        "With the voucher, each traveller pays {x} - {n} = {r} dollars.",
                        2,
                        9,
                    ),
                ),
            ),
        },
    ),
    "recipes": Theme(
        start_question="{name} bakes {a} batches of cookies with {b} cookies in each batch.",
        start_step="{Sub} bakes {a} batches of {b} cookies, so {sub} has {a} * {b} = {r} cookies.",
        a=(2, 8),
        b=(6, 30),
        phase="cookies",
        phases={
            "cookies": Phase(
                "How many cookies does {sub} have?",
                (
                    Op(
                        "-",
                        "{Sub} eats {n} of the cookies.",
                        "After eating {n}, {sub} has {x} - {n} = {r} cookies.",
                        2,
                        8,
                    ),
                    Op(
                        "+",
                        "{Pos} neighbor brings {obj} {n} more cookies.",
                        "With {n} more, {sub} has {x} + {n} = {r} cookies.",
                        2,
                        24,
                    ),
                    Op(
                        "/",
                        "{Sub} packs all the cookies into bags of {n}.",
                        "{Sub} fills {x} / {n} = {r} bags.",
                        2,
                        12,
                        "bags",
                    ),
                ),
            ),
            "bags": Phase(
                "How many bags does {sub} have?",
                (
                    Op(
                        "+",
                        "{Sub} also buys {n} ready-made bags of cookies.",
                        "With those, {sub} has {x} + {n} = {r} bags.",
                        2,
                        10,
                    ),
                    Op("-", "{Sub} keeps {n} bags for the family.", "{Sub} has {x} - {n} = {r} bags left.", 2, 5),
                    Op(
                        "*",
                        "{Sub} sells every bag for {n} dollars.",
                        "Selling {x} bags at {n} dollars each brings {x} * {n} = {r} dollars.",
                        2,
                        9,
                        "money",
                    ),
                ),
            ),
            "money": Phase(
                "How many dollars does {sub} have from the sale?",
                (
                    Op(
                        "-",
                        "{Sub} pays {n} dollars for the ingredients out of the money.",
                        "After paying {n} for ingredients, {sub} keeps {x} - {n} = {r} dollars.",
                        2,
                        30,
                    ),
                    Op(
                        "+",
                        "A customer leaves a {n} dollar tip.",
                        "With the tip, {sub} has {x} + {n} = {r} dollars.",
                        2,
                        10,
                    ),
                ),
            ),
        },
    ),
    "savings": Theme(
        start_question="{name} saves {b} dollars every week for {a} weeks.",
        start_step="{Sub} saves {b} dollars for {a} weeks, so {sub} has {a} * {b} = {r} dollars.",
        a=(3, 20),
        b=(5, 40),
        phase="savings",
        phases={
            "savings": Phase(
                "How many dollars does {sub} have?",
                (
                    Op(
                        "+",
                        "{Pos} grandmother gives {obj} {n} dollars.",
                        "With the gift, {sub} has {x} + {n} = {r} dollars.",
                        5,
                        50,
                    ),
                    Op(
                        "-",
                        "{Sub} spends {n} dollars on a book.",
                        "After the book, {sub} has {x} - {n} = {r} dollars.",
                        3,
                        30,
                    ),
                    Op(
                        "/",
                        "{Sub} divides the money equally among {n} jars.",
                        "Each jar holds {x} / {n} = {r} dollars.",
                        2,
                        10,
                        "jar",
                    ),
                    Op(
                        "/",
                        "Game cards cost {n} dollars each, and {sub} spends all the money on them.",
                        "{Sub} buys {x} / {n} = {r} game cards.",
                        2,
                        10,
                        "cards",
                    ),
                ),
            ),
            "jar": Phase(
                "How many dollars are in each jar?",
                (
                    Op(
                        "+",
                        "{Sub} then adds {n} dollars to each jar.",
                        "Each jar then holds {x} + {n} = {r} dollars.",
                        2,
                        20,
                    ),
                    Op(
                        "-",
                        "{Sub} then takes {n} dollars out of each jar.",
                        "Each jar then holds {x} - {n} = {r} dollars.",
                        2,
                        10,
                    ),
                ),
            ),
            "cards": Phase(
                "How many game cards does {sub} have?",
                (
                    Op(
                        "+",
                        "A friend gives {obj} {n} more cards.",
                        "With the gift, {sub} has {x} + {n} = {r} cards.",
                        2,
                        15,
                    ),
                    Op("-", "{Sub} trades away {n} cards.", "After the trade, {sub} has {x} - {n} = {r} cards.", 2, 10),
                    Op("*", "Every card shows {n} stars.", "The cards show {x} * {n} = {r} stars.", 2, 6, "stars"),
                ),
            ),
            "stars": Phase(
                "How many stars are there?",
                (
                    Op(
                        "+",
                        "{Sub} draws {n} extra stars on the box.",
                        "With the extra stars, there are {x} + {n} = {r} stars.",
                        2,
                        20,
                    ),
                    Op(
                        "-",
                        "{Sub} covers {n} of the stars with stickers.",
                        "With {n} covered, there are {x} - {n} = {r} stars.",
                        2,
                        10,
                    ),
                ),
            ),
        },
    ),
}

# (name, Sub, sub, obj, pos): the pronouns the templates need.
NAMES: tuple[tuple[str, str, str, str, str], ...] = (
    ("Maya", "She", "she", "her", "her"),
    ("Liam", "He", "he", "him", "his"),
    ("Aisha", "She", "she", "her", "her"),
    ("Kenji", "He", "he", "him", "his"),
    ("Sofia", "She", "she", "her", "her"),
    ("Omar", "He", "he", "him", "his"),
    ("Elena", "She", "she", "her", "her"),
    ("Tom", "He", "he", "him", "his"),
    ("Priya", "She", "she", "her", "her"),
    ("Diego", "He", "he", "him", "his"),
)


_EXACT = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _apply(sym: str, x: int, n: int) -> int:
    """The step's result, computed exactly; anything but a positive integer is a generator bug, not data."""
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
    value = ops[sym](Fraction(x), Fraction(n))
    if not (value.denominator == 1 and value > 0):
        raise AssertionError(f"synthetic step {x} {sym} {n} = {value} is not a positive integer")
    return int(value)


def _evaluate(expression: str) -> Fraction:
    """The exact value of a chain written as one expression of integers, + - * / and parentheses (exact
    fractions: sympy's parser took most of the time of generating a problem)."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _EXACT:
            return _EXACT[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        raise AssertionError(f"synthetic chain {expression!r} is not integer arithmetic")

    return walk(ast.parse(expression, mode="eval").body)


def _operand(rng: random.Random, op: Op, x: int) -> int | None:
    """A number for ``op`` that keeps the result a positive integer below the cap, or None if there is none."""
    if op.sym == "/":
        choices = [d for d in range(op.lo, op.hi + 1) if x % d == 0 and x // d >= 2]
        return rng.choice(choices) if choices else None
    if op.sym == "-":
        hi = min(op.hi, x - 1)
        return rng.randint(op.lo, hi) if hi >= op.lo else None
    n = rng.randint(op.lo, op.hi)
    # Only products can run away; '+' must always fit so that every phase has a next step.
    return None if op.sym == "*" and x * n >= _MAX_VALUE else n


def _capacity(theme: Theme, phase: str, seen: frozenset[str] = frozenset()) -> int:
    """How many steps can still be told from ``phase`` without repeating a sentence."""
    ops = theme.phases[phase].ops
    stay = sum(op.to is None for op in ops)
    onward = [1 + _capacity(theme, op.to, seen | {phase}) for op in ops if op.to is not None and op.to not in seen]
    return stay + max(onward, default=0)


def _render(template: str, pronouns: dict[str, str], **numbers: int) -> str:
    text = template.format(**pronouns, **numbers)
    return text[0].upper() + text[1:]


def generate_problem(index: int, seed: int, steps: int) -> Problem:
    """Problem ``index`` of the stream for ``seed``, with exactly ``steps`` arithmetic steps.

    >>> generate_problem(0, seed=0, steps=3).solution.splitlines()[-1].startswith("The answer is")
    True
    """
    rng = random.Random(f"amc-synthetic:{seed}:{index}")
    theme_name = rng.choice(sorted(THEMES))
    theme = THEMES[theme_name]
    name, sub_cap, sub, obj, pos = rng.choice(NAMES)
    pronouns = {"name": name, "Sub": sub_cap, "sub": sub, "obj": obj, "pos": pos, "Pos": pos.capitalize()}
    a, b = rng.randint(*theme.a), rng.randint(*theme.b)
    x = _apply("*", a, b)
    story = [_render(theme.start_question, pronouns, a=a, b=b)]
    lines = [_render(theme.start_step, pronouns, a=a, b=b, r=x)]
    expression = f"({a} * {b})"
    phase, used = theme.phase, set()
    for step in range(1, steps):
        left_after = steps - 1 - step
        # '+' always fits, so a step exists. Prefer a sentence not told yet, and do not move on to a phase too small
        # to hold the steps still to come; only chains longer than a story's capacity repeat a sentence.
        options = [(op, n) for op in theme.phases[phase].ops if (n := _operand(rng, op, x)) is not None]
        fresh = [(op, n) for op, n in options if op not in used]
        roomy = [(op, n) for op, n in fresh if op.to is None or left_after <= _capacity(theme, op.to)]
        op, n = rng.choice(roomy or fresh or options)
        used.add(op)
        r = _apply(op.sym, x, n)
        story.append(_render(op.question, pronouns, n=n))
        lines.append(_render(op.step, pronouns, x=x, n=n, r=r))
        expression = f"({expression} {op.sym} {n})"
        x, phase = r, op.to or phase
    # Independent check: the chain re-evaluated as one expression must give the same answer.
    if _evaluate(expression) != x:
        raise AssertionError(f"synthetic chain {expression} does not evaluate to {x}")
    story.append(_render(theme.phases[phase].ask, pronouns))
    lines.append(f"The answer is {x}.")
    return Problem(
        id=f"synthetic-{index:05d}",
        question=" ".join(story),
        answer=str(x),
        solution="\n".join(lines),
        source="synthetic",
        difficulty=steps,
        subject=theme_name,
    )


def generate_problems(cfg: SyntheticSource, seed: int) -> list[Problem]:
    """``cfg.count`` problems; the number of steps of each is drawn uniformly from min_steps..max_steps.

    ``cfg.seed`` overrides the run seed, so a fixed problem set can be kept while the rest of a run varies.
    """
    if cfg.min_steps > cfg.max_steps:
        raise ConfigError("<config>", "source.min_steps", f"min_steps {cfg.min_steps} > max_steps {cfg.max_steps}")
    base = cfg.seed if cfg.seed is not None else seed
    problems = []
    for index in range(cfg.count):
        steps = random.Random(f"amc-synthetic-steps:{base}:{index}").randint(cfg.min_steps, cfg.max_steps)
        problems.append(generate_problem(index, base, steps))
    return problems
