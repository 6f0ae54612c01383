"""``sim``: a deterministic offline stand-in for every role. It is not a model.

It exists so that the quickstart and the tests run anywhere, offline, in seconds. It reads the structured
``context`` a stage attaches to each request (real engines ignore it) and plays:

- actor (``solve``; context ``question``, ``answer``, ``solution``): writes the problem's reference solution, and
  with probability ``error_rate`` corrupts the result of one equation and carries the wrong value through the
  later steps;
- injector (``inject``; context ``steps``, ``k``, ``error_type``): rewrites step k with a wrong result (or, for
  ``misread_quantity``/``wrong_operation``, a wrong operand or operator with a consistent result);
- actor (``continue``; context ``steps`` (the partial solution), ``original_steps`` (the correct path it came
  from), ``k``, ``answer``, optional ``mode``): when ``steps`` holds k+1 steps (an injected step k), finishes the
  path by carrying the new value through the original later steps; when it holds k steps (no new step,
  ``mode: resample``), finishes the original path from step k, and with probability ``error_rate`` corrupts one
  of its equations at or after step k (not the answer line) and carries the wrong value through;
- annotator (``critique``): checks each step symbolically (:func:`amc.steps.first_false_arithmetic`), uses the
  known error location when it is given as a hint, grades the final answer against the reference, and writes the
  critique in the AutoMathCritique text format (steps after the first error are Wrong when the mistake reached the
  answer; a wrong answer with no step to blame puts the blame on the last step); with probability ``error_rate``
  its final verdict is wrong;
- refiner (``refine``): recomputes from the first flagged step; some attempts fail or shortcut to a bare answer.

Faults on request, per task (``truncate`` and ``malformed`` in the model block, e.g. ``{refine: 0.5}``, ``'*'``
for every task): a truncated completion runs on past its answer and ends with ``finish_reason == "length"`` (so
only the finish reason tells a stage not to trust it); a malformed one has no answer line, is a critique no parser
can read, or is an empty rewrite. With neither set, every completion finishes with ``stop``.

Everything is seeded by the request's seed, so the same request always gets the same answer. Set
``AMC_SIM_REQUEST_LOG`` to a file to log every request it answers (tests use it to prove that no request is
repeated), and ``AMC_SIM_DELAY`` (seconds) to slow it down.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import os
import random
import re
import time
from fractions import Fraction
from typing import Any

from amc.answers import extract, verify
from amc.backends.base import Completion, FinishReason, GenerationRequest, GenerationResponse
from amc.critique_format import render_json, render_text
from amc.records import StepVerdict
from amc.steps import first_false_arithmetic, solution_steps

_NUM = r"\d[\d,]*(?:\.\d+)?"
_EQ = re.compile(
    rf"(?P<expr>\(?\$?{_NUM}\)?(?:\s*[-+*/×x÷]\s*\(?\$?{_NUM}\)?)+)\s*=\s*\$?(?P<res>-?{_NUM})(?![\d.]*\d)"
)
_ANSWER = re.compile(rf"(The answer is\s*\$?)(-?{_NUM})", re.IGNORECASE)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


# The helpers below are pure functions of their text; a build asks them about the same steps again and again (every
# refinement of a critique, every rollout of a path), so their answers are remembered (bounded caches; Fractions
# and match objects are immutable).


@functools.lru_cache(maxsize=65536)
def _num(text: str) -> Fraction:
    return Fraction(text.replace(",", "").replace("$", ""))


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


@functools.lru_cache(maxsize=65536)
def _eval(expr: str) -> Fraction | None:
    """Exact value of a plain arithmetic expression, or None."""
    clean = expr.replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/")
    clean = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", clean)

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError("unsupported")

    try:
        return walk(ast.parse(clean.strip(), mode="eval"))
    except (ValueError, SyntaxError, ZeroDivisionError):
        return None


@functools.lru_cache(maxsize=65536)
def _equation(line: str) -> re.Match[str] | None:
    matches = list(_EQ.finditer(line))
    return matches[-1] if matches else None


def _replace_numbers(text: str, subs: dict[Fraction, Fraction]) -> str:
    def swap(m: re.Match[str]) -> str:
        try:
            value = _num(m.group(0))
        except ValueError:
            return m.group(0)
        return _fmt(subs[value]) if value in subs else m.group(0)

    return re.sub(rf"(?<![\d.]){_NUM}(?![\d.]*\d)", swap, text)


def carry(steps: list[str], k: int, new_line: str) -> list[str]:
    """Replace step k by ``new_line`` and carry its value through the later steps, recomputing each equation.

    The value the original step k stated is replaced by the value ``new_line`` states wherever later steps use it;
    a later equation whose result changes passes its own change on.
    """
    out = list(steps)
    subs: dict[Fraction, Fraction] = {}
    old_eq, new_eq = _equation(steps[k]), _equation(new_line)
    if old_eq and new_eq:
        old_v, new_v = _num(old_eq.group("res")), _num(new_eq.group("res"))
        if old_v != new_v:
            subs[old_v] = new_v
    out[k] = new_line
    for j in range(k + 1, len(out)):
        line = out[j]
        eq = _equation(line)
        if eq:
            expr = _replace_numbers(eq.group("expr"), subs)
            value = _eval(expr)
            stated = _num(eq.group("res"))
            if value is not None and value != stated:
                subs[stated] = value
            res = _fmt(value) if value is not None else eq.group("res")
            head = _replace_numbers(line[: eq.start()], subs)
            line = head + expr + line[eq.end("expr") : eq.start("res")] + res + line[eq.end("res") :]
        else:
            line = _replace_numbers(line, subs)
        out[j] = line
    return out


def _wrong_result(line: str, rng: random.Random) -> str | None:
    eq = _equation(line)
    if not eq:
        return None
    value = _num(eq.group("res"))
    delta = rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])
    wrong = value + delta if value + delta != value else value + 1
    return line[: eq.start("res")] + _fmt(wrong) + line[eq.end("res") :]


def _wrong_operand(line: str, rng: random.Random) -> str | None:
    """Change the first operand and recompute: internally consistent, wrong for the problem."""
    eq = _equation(line)
    if not eq:
        return None
    first = re.search(_NUM, eq.group("expr"))
    if not first:
        return None
    old = _num(first.group(0))
    expr = eq.group("expr")
    expr = expr[: first.start()] + _fmt(old + rng.choice([1, 2, 5, 10])) + expr[first.end() :]
    value = _eval(expr)
    if value is None:
        return None
    middle = line[eq.end("expr") : eq.start("res")]
    return line[: eq.start("expr")] + expr + middle + _fmt(value) + line[eq.end("res") :]


def _wrong_operator(line: str, rng: random.Random) -> str | None:
    """Swap the first operator and recompute: internally consistent, the wrong operation for the problem."""
    eq = _equation(line)
    if not eq:
        return None
    expr = eq.group("expr")
    op = re.search(r"(?<=\s)[-+*/×÷](?=\s)|(?<=\d)[-+*/×÷](?=\d)", expr)
    if not op:
        return None
    swap = {"+": "-", "-": "+", "*": "+", "×": "+", "/": "*", "÷": "*"}[op.group(0)]
    new_expr = expr[: op.start()] + swap + expr[op.end() :]
    value = _eval(new_expr)
    if value is None or value == _eval(expr) or value < 0:
        return None
    middle = line[eq.end("expr") : eq.start("res")]
    return line[: eq.start("expr")] + new_expr + middle + _fmt(value) + line[eq.end("res") :]


@functools.lru_cache(maxsize=65536)
def _fixed(line: str) -> str:
    """The line with its equation's result recomputed correctly."""
    eq = _equation(line)
    value = _eval(eq.group("expr")) if eq else None
    if not eq or value is None:
        return line
    return line[: eq.start("res")] + _fmt(value) + line[eq.end("res") :]


@functools.lru_cache(maxsize=8192)
def _fixed_from(steps: tuple[str, ...], start: int) -> tuple[str, ...]:
    """``steps`` with every equation from ``start`` on recomputed, each fix carried through the later steps."""
    out = list(steps)
    for j in range(start, len(out)):
        fixed = _fixed(out[j])
        if fixed != out[j]:
            out = carry(out, j, fixed)
    return tuple(out)


def reference_steps(solution: str | None, answer: str) -> list[str]:
    """Reference solution as clean steps: calculator notes dropped, '#### x' turned into 'The answer is x.'"""
    if not solution:
        return ["I could not work this out.", "The answer is 0."]
    steps = solution_steps(solution)
    if not steps or not _ANSWER.search(steps[-1]):
        steps.append(f"The answer is {answer}.")
    return steps


def malformed(task: str, c: dict[str, Any], text: str) -> str:
    """What a confused model writes instead of ``text``: a solution without an answer, a critique no parser can
    read (prose without labels, or JSON cut in the middle), an empty rewrite."""
    if task == "critique":
        if c.get("format") == "json":
            return text[: max(1, len(text) // 2)]
        return "I looked at the solution.\n" + "\n".join(f"Hmm: {s}" for s in c.get("steps", []))
    if task == "inject":
        return ""
    return "\n".join(line for line in text.split("\n") if not _ANSWER.search(line)) or "I am not sure."


class SimBackend:
    """The offline stand-in engine (see the module docstring)."""

    engine = "sim"

    def __init__(self, cfg: Any):
        self.model: str = cfg.model
        self.revision: str | None = None
        self.error_rate: float = cfg.error_rate
        self.truncate: dict[str, float] = dict(getattr(cfg, "truncate", {}) or {})
        self.malformed: dict[str, float] = dict(getattr(cfg, "malformed", {}) or {})
        self.delay = float(os.environ.get("AMC_SIM_DELAY", "0") or 0)
        self.log_path = os.environ.get("AMC_SIM_REQUEST_LOG")

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        out = []
        for req in requests:
            if self.delay:
                time.sleep(self.delay)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"id": req.id, "model": self.model, "seed": req.params.seed}) + "\n")
            handler = getattr(self, f"_task_{req.context.get('task', '')}", None)
            if handler is None:
                out.append(
                    GenerationResponse(
                        request_id=req.id,
                        error="sim: no task in the request context",
                        engine=self.engine,
                        model=self.model,
                    )
                )
                continue
            task = req.context["task"]
            answers = []
            for j in range(req.params.n):
                text = handler(req.context, random.Random(f"{req.params.seed}-{j}"))
                answers.append(self._faults(task, req.context, text, f"{req.params.seed}-{j}-fault"))
            prompt_tokens = sum(len(m.content.split()) for m in req.messages)
            out.append(
                GenerationResponse(
                    request_id=req.id,
                    engine=self.engine,
                    model=self.model,
                    completions=[
                        Completion(
                            text=t, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=len(t.split())
                        )
                        for t, finish in answers
                    ],
                )
            )
        return out

    def _rate(self, rates: dict[str, float], task: str) -> float:
        return rates.get(task, rates.get("*", 0.0))

    def _faults(self, task: str, c: dict[str, Any], text: str, seed: str) -> tuple[str, FinishReason]:
        """The completion as a faulty model would end it: malformed, or cut off by ``max_tokens`` after running on
        past its answer (so a cut-off text may still state the right answer: only ``finish_reason`` tells)."""
        if not (self.malformed or self.truncate):
            return text, "stop"
        rng = random.Random(seed)  # seeded only when faults are on: seeding a generator costs as much as a task
        if rng.random() < self._rate(self.malformed, task):
            return malformed(task, c, text), "stop"
        if rng.random() < self._rate(self.truncate, task):
            words = text.split(" ")
            return text + "\nLet me check this again. " + " ".join(words[: max(1, len(words) // 2)]), "length"
        return text, "stop"

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ roles
    def _task_solve(self, c: dict[str, Any], rng: random.Random) -> str:
        steps = reference_steps(c.get("solution"), c["answer"])
        if rng.random() < self.error_rate:
            candidates = [i for i, s in enumerate(steps[:-1]) if _equation(s)]
            if candidates:
                k = rng.choice(candidates)
                wrong = _wrong_result(steps[k], rng)
                if wrong:
                    steps = carry(steps, k, wrong)
        return "\n".join(steps)

    def _task_inject(self, c: dict[str, Any], rng: random.Random) -> str:
        line = c["steps"][c["k"]]
        makers = {"misread_quantity": _wrong_operand, "wrong_operation": _wrong_operator}
        return makers.get(c.get("error_type", ""), _wrong_result)(line, rng) or line

    def _task_continue(self, c: dict[str, Any], rng: random.Random) -> str:
        k, original = c["k"], list(c["original_steps"])
        if len(c["steps"]) > k:  # an injected step k: carry its value through
            full = carry(original, k, c["steps"][k])
            return "\n".join(full[k + 1 :])
        # a resample from step k: the actor redoes the rest and slips now and then
        later = [j for j in range(k, len(original) - 1) if _equation(original[j])]
        if later and rng.random() < self.error_rate:
            j = rng.choice(later)
            wrong = _wrong_result(original[j], rng)
            if wrong:
                original = carry(original, j, wrong)
        return "\n".join(original[k:])

    def _task_critique(self, c: dict[str, Any], rng: random.Random) -> str:
        steps: list[str] = c["steps"]
        hinted = c.get("error_step")
        first = hinted if hinted is not None and hinted >= 0 else first_false_arithmetic(steps)
        answer_ok = verify(c["reference_answer"], extract("\n".join(steps)))
        if rng.random() < self.error_rate:
            answer_ok = not answer_ok  # a careless annotator: the filter's verdict rule should catch this
        if first is None and not answer_ok and steps:
            first = len(steps) - 1  # no step to blame but a wrong answer: the conclusion does not follow
        verdicts = []
        for i, step in enumerate(steps):
            if first is not None and i == first:
                eq = _equation(_fixed(step))
                why = (
                    f"This step is wrong: it should be {eq.group(0)}."
                    if eq and _fixed(step) != step
                    else ("This step does not follow from the problem.")
                )
                verdicts.append(StepVerdict(index=i, step=step, correct=False, explanation=why))
                if c.get("stop_at_first_error"):
                    break
            elif first is not None and i > first and not answer_ok:
                # the mistake reached the answer: every later step carries the wrong value
                verdicts.append(
                    StepVerdict(
                        index=i, step=step, correct=False, explanation="This step carries the earlier mistake forward."
                    )
                )
            else:
                verdicts.append(StepVerdict(index=i, step=step, correct=True, explanation="This step is correct."))
        final_why = "The final answer matches the reference." if answer_ok else "The final answer is wrong."
        render = render_json if c.get("format") == "json" else render_text
        return render(verdicts, answer_ok, final_why)

    def _task_rollout(self, c: dict[str, Any], rng: random.Random) -> str:
        """Finish a path from its first i+1 steps: the later steps are recomputed from the prefix's values, so a
        prefix that already holds a mistake leads to a wrong answer; the actor may also slip on its own."""
        i = len(c["steps"]) - 1
        steps = list(_fixed_from(tuple(c["path_steps"]), i + 1))
        later = [j for j in range(i + 1, len(steps) - 1) if _equation(steps[j])]
        if later and rng.random() < self.error_rate:
            j = rng.choice(later)
            wrong = _wrong_result(steps[j], rng)
            if wrong:
                steps = carry(steps, j, wrong)
        return "\n".join(steps[i + 1 :])

    def _task_refine(self, c: dict[str, Any], rng: random.Random) -> str:
        steps: list[str] = c["steps"]
        if c.get("path_correct"):
            return "\n".join(steps)
        roll = rng.random()
        if roll < 0.15:
            return f"The answer is {c['answer']}."  # a shortcut: no working at all
        if roll < 0.35:
            return "\n".join(steps)  # the critique was ignored
        first = c.get("first_error_step")
        start = first if first is not None and first >= 0 else 0
        return "\n".join(_fixed_from(tuple(steps), start))
