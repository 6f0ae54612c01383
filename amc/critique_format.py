"""The two critique output formats (AutoMathCritique text, JSON): a renderer and a parser for each.

Parsers never raise: an annotator's output is data, and an unreadable critique must become a reject row with a
reason (``ParsedCritique.problems``), never a crash in the middle of a long job. The text parser accepts the
variants real annotators write (``Right``/``Incorrect``, markdown bold, ``Step 1:`` prefixes, verdicts without a
``Step sentence`` line, explanations over several lines), because the original release itself mixes them.

    >>> text = render_text([StepVerdict(index=0, step="2+2=5", correct=False, explanation="2+2=4")], False, "no")
    >>> parse_text(text, steps=["2+2=5"]).first_error_step
    0
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from amc._align import _STEP_NUMBER, _align, _Row
from amc.critique_salvage import ends_inside_object, salvage_object
from amc.records import CritiqueFormat, ParseStatus, StepVerdict

_log = logging.getLogger(__name__)


class ParsedCritique(BaseModel):
    """What a parser recovered from one critique; the fields map one to one onto :class:`amc.records.Critique`."""

    model_config = ConfigDict(extra="forbid")

    step_verdicts: list[StepVerdict] = Field(default_factory=list)
    first_error_step: int | None = Field(
        default=None, description="0-based first Wrong step; -1 when every step is Correct; None when none parsed."
    )
    final_verdict: bool | None = None
    final_explanation: str = ""
    status: ParseStatus = "failed"
    problems: list[str] = Field(default_factory=list, description="What went wrong, for the rejects and the card.")

    @property
    def truncated(self) -> bool:
        """True when the output was cut off (by ``max_tokens``) and only its completed verdicts were kept."""
        return any(p.startswith(TRUNCATED) for p in self.problems)

    @property
    def reason(self) -> str:
        """Why the status is not "ok", in one line ("" when it is)."""
        return "; ".join(self.problems)


# Length budgets of one critique: real small models otherwise fill an explanation until max_tokens. The JSON schema
# enforces them (guided decoding); the prompts state them (see critique*.jinja).
EXPLANATION_CHARS = 160
STEP_CHARS = 120  # the repeated step: real models repeat a step verbatim, or degenerate ("1.1.1.1...")
TRUNCATED = "truncated"  # the problem every cut-off critique carries first


# ------------------------------------------------------------------------------------------- rendering


def _word(correct: bool) -> str:
    return "Correct" if correct else "Wrong"


def render_text(verdicts: list[StepVerdict], final_correct: bool, final_explanation: str) -> str:
    """Write a critique in the AutoMathCritique text format (one block per step, then the final answer)."""
    blocks = [
        f"Step sentence: {v.step}\nCorrectness of the step: {_word(v.correct)}\nExplanation: {v.explanation}"
        for v in verdicts
    ]
    blocks.append(f"Correctness of the final answer: {_word(final_correct)}\nExplanation: {final_explanation}")
    return "\n\n".join(blocks) + "\n"


def _strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    # Every key required and no others: the shape OpenAI structured outputs and vLLM guided decoding enforce.
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def critique_json_schema(
    max_steps: int | None = None,
    explanation_chars: int | None = EXPLANATION_CHARS,
    step_chars: int | None = STEP_CHARS,
) -> dict[str, Any]:
    """JSON schema of the JSON format, strict so that guided decoding can enforce it.

    Bounded, so that a model under guided decoding cannot write until ``max_tokens``: each explanation has at most
    ``explanation_chars`` characters, each repeated step ``step_chars``, and the list at most ``max_steps`` items
    (the path's step count; ``None``: unbounded). Pass ``None`` for a bound to drop it.

    >>> critique_json_schema(max_steps=3)["properties"]["steps"]["maxItems"]
    3
    """

    def text(limit: int | None) -> dict[str, Any]:
        return {"type": "string"} if limit is None else {"type": "string", "maxLength": limit}

    flag = {"type": "boolean"}
    step = _strict_object({"step": text(step_chars), "correct": flag, "explanation": text(explanation_chars)})
    items: dict[str, Any] = {"type": "array", "items": step}
    if max_steps is not None:
        items["maxItems"] = max(1, max_steps)
    top = {"steps": items, "final_answer_correct": flag, "final_explanation": text(explanation_chars)}
    return {"title": "StepLevelCritique", **_strict_object(top)}


def render_json(verdicts: list[StepVerdict], final_correct: bool, final_explanation: str) -> str:
    """Write a critique as one compact JSON object matching :func:`critique_json_schema` (compact: fewer tokens)."""
    steps = [{"step": v.step, "correct": v.correct, "explanation": v.explanation} for v in verdicts]
    obj = {"steps": steps, "final_answer_correct": final_correct, "final_explanation": final_explanation}
    return json.dumps(obj, ensure_ascii=False)


# ------------------------------------------------------------------------------------------- verdict words

_NOT = r"not\s+(?:correct|right|valid|true)"
_NEGATIVE = re.compile(rf"\b(?:wrong|incorrect|false|erroneous|invalid|flawed|partially|{_NOT})\b|[✗✘❌]", re.I)
_POSITIVE = re.compile(r"\b(?:correct|right|true|valid)\b|[✓✔✅]", re.I)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?;])\s|\n")


def _read_verdict(text: str, problems: list[str]) -> bool | None:
    """Correct/Right -> True, Wrong/Incorrect -> False, from the first sentence only (the rest is explanation).

    Both polarities at once ("Correct for the equation but wrong in context", seen in the release) read as Wrong:
    a step that is only partly right is where the error starts.
    """
    head = _FIRST_SENTENCE.split(text.strip()[:1000], maxsplit=1)[0][:300]
    negative, positive = bool(_NEGATIVE.search(head)), bool(_POSITIVE.search(_NEGATIVE.sub(" ", head)))
    if negative and positive:
        problems.append(f"mixed verdict {head[:80]!r} read as Wrong")
    return False if negative else True if positive else None


# ------------------------------------------------------------------------------------------- text parsing

# Labels are looked for in the first characters of a line only: a label is near the start, and a bounded window
# keeps regex backtracking bounded on hostile input (a megabyte of asterisks on one line).
_HEAD = 240
_LEAD = re.compile(r"[\s>#*_\-+•·]*(?:\(?\d{1,3}[.):]\s+[*_]*)?")  # bullets, headings, "1." list numbers, bold
_COLON = r"[*_\s]*[:：][*_\s]*"
_JUDGED = r"(?:correctness|verdict|judge?ment)"
_FINAL = rf"{_JUDGED}\s+(?:of|on|for)\s+(?:the\s+)?(?:final\s+)?answer|final\s+(?:answer\s+)?{_JUDGED}"
_VERDICT = rf"{_JUDGED}(?:\s+(?:of|on|for)\s+(?:the\s+|this\s+)?step(?:\s*\d{{1,3}})?)?|step\s+{_JUDGED}"
_LABELS = [  # order matters: the final answer's label before the bare "Correctness:"
    ("final", re.compile(rf"(?:{_FINAL}){_COLON}", re.I)),
    ("verdict", re.compile(rf"(?:{_VERDICT}){_COLON}", re.I)),
    ("step", re.compile(rf"(?:(?:step\s+)?sentence|step\s+text|step){_COLON}", re.I)),
    ("explanation", re.compile(rf"(?:explanation|reason(?:ing)?|justification|rationale){_COLON}", re.I)),
]
_SEPARATOR = re.compile(r"\s*(?:-{3,}|\*{3,}|_{3,}|={3,})\s*")
_TRAILING_BOLD = re.compile(r"(?:\*\*|__)+\s*$")


def _classify(line: str) -> tuple[str, str, int | None]:
    """(kind of line, value after its label, step number it states); 'other' lines carry their text unchanged."""
    head = line[:_HEAD]
    pos = _LEAD.match(head).end()  # type: ignore[union-attr]  # an all-optional pattern always matches
    number, numbered = None, _STEP_NUMBER.match(head, pos)
    if numbered:
        number, pos = int(numbered.group(1)), numbered.end()
    for kind, pattern in _LABELS:
        if m := pattern.match(head, pos):
            value = _TRAILING_BOLD.sub("", head[m.end() :] + line[_HEAD:]).strip()
            inner = _STEP_NUMBER.match(value) if kind == "step" else None
            if inner and inner.group("sep"):  # critics shown "Step 2: ..." echo "Step sentence: Step 2: ..."
                number, value = int(inner.group(1)), value[inner.end() :]
            return kind, value, number
    if numbered and numbered.group("sep"):  # "Step 3: <sentence>" is a step sentence with its number
        return "step", _TRAILING_BOLD.sub("", line[pos:]).strip(), number
    return "other", line, None


@dataclass
class _Block:
    """One step (or the final answer) while it is being read."""

    sentence: list[str] | None = None  # None: no "Step sentence" line
    number: int | None = None
    verdict_text: str | None = None  # None: no verdict label yet
    verdict: bool | None = None
    explanation: list[str] = field(default_factory=list)


def _joined(lines: list[str] | None) -> str:
    return "\n".join(lines or []).strip()


def parse_text(raw: str, steps: list[str] | None = None, *, truncated: bool = False) -> ParsedCritique:
    """Read an AutoMathCritique text critique; never raises (problems are reported in the result).

    With ``steps`` (the path's steps), each verdict gets the index of the path step its "Step sentence" repeats
    (fuzzy match), else the step number it states, else the next step in order; without, verdicts count from 0.

    ``truncated``: the output was cut off by ``max_tokens``. Its unfinished last line is dropped, the verdicts read
    before it are kept, and the result is at best "partial" with a problem starting "truncated" (never a silent
    success).
    """
    if not truncated:
        return _safely(_parse_text, raw, steps)
    cut = raw[: raw.rfind("\n") + 1] if isinstance(raw, str) else raw  # the last line may end mid-word
    return _cut_off(_safely(_parse_text, cut, steps))


def _cut_off(parsed: ParsedCritique) -> ParsedCritique:
    """Mark a parse of a cut-off output: the problem list starts with why, and "ok" becomes "partial"."""
    kept = len(parsed.step_verdicts)
    final = "" if parsed.final_verdict is not None else ", no final verdict"
    note = f"{TRUNCATED}: the output hit max_tokens; kept {kept} completed step verdict{'s' * (kept != 1)}{final}"
    status: ParseStatus = "partial" if parsed.status == "ok" else parsed.status
    return parsed.model_copy(update={"status": status, "problems": [note, *parsed.problems]})


def _safely(parser: Callable[[str, list[str] | None], ParsedCritique], raw: Any, steps: Any) -> ParsedCritique:
    """Run a parser on one output. Text that is no critique is a failed parse; a crash of the parser is a bug in
    amc: it is logged with its traceback (and the row becomes a failed parse, so a long job goes on), and with
    ``AMC_STRICT_PARSERS=1`` (the test suite sets it) it is raised, so that no test passes over it."""
    if not isinstance(raw, str):
        return _finish([], None, "", None, [f"critique is {type(raw).__name__}, not text"])
    try:
        return parser(raw, None if steps is None else [str(s) for s in steps])
    except Exception as exc:
        if os.environ.get("AMC_STRICT_PARSERS") == "1":
            raise
        _log.exception("critique parser bug on a %d-character output (please report it)", len(raw))
        return _finish([], None, "", None, [f"parser bug: {type(exc).__name__}: {exc}"])


def _parse_text(raw: str, steps: list[str] | None) -> ParsedCritique:
    problems: list[str] = []
    done: list[_Block] = []
    current: _Block | None = None  # the step being read
    final: _Block | None = None
    focus: _Block | None = None  # the block labelled last: explanations and continuation lines go there
    open_field: str | None = None  # the field that unlabelled lines continue

    def close(before_final: bool = False) -> None:
        nonlocal current
        if current is not None and current.verdict is not None:
            done.append(current)
        elif current is not None and current.verdict_text is not None:
            problems.append(f"unreadable step verdict {current.verdict_text[:80]!r}")
        elif current is not None and current.sentence is not None and not before_final:
            # (The release repeats the answer line, without a verdict, just before the final verdict: not a problem.)
            problems.append(f"step sentence without a verdict: {_joined(current.sentence)[:80]!r}")
        current = None

    def judge(block: _Block, value: str) -> str | None:
        block.verdict_text, block.verdict = value, _read_verdict(value, problems)
        return None if value.strip() else "verdict"  # "Correctness of the step:" with the word on the next line

    for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        kind, value, number = _classify(line)
        if kind == "step":
            close()
            current = focus = _Block(sentence=[value], number=number)
            open_field = "sentence"
        elif kind == "verdict":
            if current is None or current.verdict_text is not None:  # a verdict without a "Step sentence" line
                close()
                current = _Block()
            current.number = current.number if number is None else number
            focus = current
            open_field = judge(current, value)
        elif kind == "final":
            close(before_final=True)
            if final is not None:
                problems.append("several final verdicts; the first is kept")
                focus = open_field = None
            else:
                final = focus = _Block()
                open_field = judge(final, value)
        elif kind == "explanation" and focus is not None:
            focus.explanation.append(value)
            open_field = "explanation"
        elif kind != "other" or focus is None or _SEPARATOR.fullmatch(line):
            continue
        elif open_field == "sentence" and focus.sentence is not None:
            focus.sentence.append(line.strip())
        elif open_field == "explanation":
            focus.explanation.append(line.rstrip())
        elif open_field == "verdict" and line.strip():
            open_field = judge(focus, line)
    close()

    if final is not None and final.verdict is None:
        problems.append(f"unreadable final verdict {(final.verdict_text or '')[:80]!r}")
    rows: list[_Row] = [
        (_joined(b.sentence) if b.sentence is not None else None, b.number, bool(b.verdict), _joined(b.explanation))
        for b in done
    ]
    final_explanation = _joined(final.explanation) if final is not None else ""
    return _finish(rows, final.verdict if final is not None else None, final_explanation, steps, problems)


# ------------------------------------------------------------------------------------------- result


def _finish(
    rows: list[_Row], final: bool | None, final_explanation: str, steps: list[str] | None, problems: list[str]
) -> ParsedCritique:
    verdicts = _align(rows, steps, problems)
    wrong = [v.index for v in verdicts if not v.correct]
    if not verdicts:
        problems.append("no step verdict found")
    if final is None:
        problems.append("no final verdict found")
    status: ParseStatus = ("failed", "partial", "ok")[bool(verdicts) + (final is not None)]
    first_error = (min(wrong) if wrong else -1) if verdicts else None
    return ParsedCritique(
        step_verdicts=verdicts, first_error_step=first_error, final_verdict=final,
        final_explanation=final_explanation, status=status, problems=problems,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- JSON parsing

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_SCHEMA_KEYS = ("steps", "final_answer_correct", "final_explanation")
_MAX_STARTS = 50  # "{" positions tried per candidate text: bounded work on hostile input


def _load_object(raw: str) -> tuple[dict[str, Any] | None, str]:
    """The first JSON object with a schema key, from a code fence or after leading prose; else why not."""
    # strict=False: a raw tab or other control character inside a string (guided decoding allows them) is kept
    decoder, error = json.JSONDecoder(strict=False), "no JSON object found"
    fence = _FENCE.search(raw)
    for text in [fence.group(1), raw] if fence else [raw]:
        for n, m in enumerate(re.finditer(r"\{", text)):
            if n >= _MAX_STARTS:
                break
            try:
                obj, _ = decoder.raw_decode(text, m.start())
            except (ValueError, RecursionError) as exc:
                error = f"invalid JSON: {exc}" if error == "no JSON object found" else error
                continue
            # An inner step object of a broken critique also decodes; only the critique object itself counts.
            if isinstance(obj, dict) and any(k in obj for k in _SCHEMA_KEYS):
                return obj, ""
    return None, error


def _as_bool(value: Any, where: str, problems: list[str]) -> bool | None:
    if isinstance(value, bool):
        return value
    # Models without guided decoding write "Correct"/"Wrong" here.
    verdict = _read_verdict(value, problems) if isinstance(value, str) else None
    if verdict is None:
        problems.append(f"{where} is not a boolean: {str(value)[:80]!r}")
    return verdict


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)


def parse_json(raw: str, steps: list[str] | None = None, *, truncated: bool = False) -> ParsedCritique:
    """Read a JSON critique (code fences and leading text tolerated); never raises. See :func:`parse_text`.

    A critique cut off inside its JSON (``truncated``, or text that ends before the object closes) keeps the step
    objects it completed and, if it got that far, the final verdict; its status is at best "partial", with a
    problem starting "truncated".
    """
    parsed = _safely(functools.partial(_parse_json, truncated=truncated), raw, steps)
    return _cut_off(parsed) if truncated or (ends_inside_object(raw) and _load_object(raw)[0] is None) else parsed


def _parse_json(raw: str, steps: list[str] | None, truncated: bool = False) -> ParsedCritique:
    obj, error = _load_object(raw)
    if obj is None and (truncated or ends_inside_object(raw)):
        obj = salvage_object(raw)
    if obj is None:
        return _finish([], None, "", None, [error])
    problems: list[str] = []
    rows: list[_Row] = []
    items = obj.get("steps")
    if not isinstance(items, list):
        problems.append("'steps' is missing or not a list")
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, Mapping):
            problems.append(f"steps[{i}] is not an object")
        elif (correct := _as_bool(item.get("correct"), f"steps[{i}].correct", problems)) is not None:
            rows.append((_as_text(item.get("step")) or None, None, correct, _as_text(item.get("explanation")).strip()))
    final = None
    if "final_answer_correct" in obj:
        final = _as_bool(obj["final_answer_correct"], "final_answer_correct", problems)
    return _finish(rows, final, _as_text(obj.get("final_explanation")).strip(), steps, problems)


def parse(raw: str, fmt: CritiqueFormat, steps: list[str] | None = None, *, truncated: bool = False) -> ParsedCritique:
    """Read a critique in the named format ("text" or "json"); never raises, an unknown format included.
    ``truncated``: the output was cut off by ``max_tokens`` (see :func:`parse_text`)."""
    if fmt in ("text", "json"):
        reader = parse_text if fmt == "text" else parse_json
        return reader(raw, steps, truncated=truncated)
    return _finish([], None, "", None, [f"unknown critique format {fmt!r}"])
