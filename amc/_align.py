"""Which path step each critique verdict is about: fuzzy matching of step sentences, in order.

Annotators repeat each step before judging it, but not verbatim (calculator notes dropped, LaTeX re-spaced, a
MATH line split into sentences), and sometimes skip or repeat steps. ``_align`` matches the repeated sentences to
the path's steps by similarity under the constraint that verdicts come in step order, and falls back to the step
number stated, then to order, for the verdicts it cannot match. Used by both parsers of :mod:`amc.critique_format`.
"""

from __future__ import annotations

import re

try:  # difflib's algorithm compiled: the same matches, several times faster (alignment was a quarter of a build)
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - an install without it aligns the same, only slower
    from difflib import SequenceMatcher

from amc.records import StepVerdict

# A verdict read from either format before alignment: (step sentence or None, step number stated, correct, why).
_Row = tuple[str | None, int | None, bool, str]
# "Step 3:" before a step sentence: the text parser reads the number, alignment strips it before comparing.
_STEP_NUMBER = re.compile(r"step\s*#?\s*(\d{1,3})\b[*_\s]*(?P<sep>[:.)\-–—]?)[*_\s]*", re.I)

_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K calculator notes; critiques repeat the step without them
_NOISE = re.compile(r"[\s$*`&]|\\\\")  # spacing, math delimiters, bold and LaTeX line breaks vary in repetition
_MATCH_AT = 0.6  # difflib ratio of a sentence that repeats a whole step
_COVER_AT = 0.85  # share of the shorter text found in the longer: a sentence inside a line of several sentences
_SENTENCE_CHARS, _STEP_CHARS = 400, 2000  # difflib is quadratic: bounded texts keep hostile input fast
_MAX_PAIRS = 10_000  # sentence-step comparisons per critique; beyond, alignment falls back to order
_NEW_STEP_BONUS = 1e-3


def _normalise(text: str, limit: int) -> str:
    numbered = _STEP_NUMBER.match(text[:40])
    if numbered and numbered.group("sep"):
        text = text[numbered.end() :]
    # A sentence ends with "." where the LaTeX line it repeats ends with a line break: the end says nothing.
    return _NOISE.sub("", _CALCULATOR.sub("", text[: 4 * limit])).lower()[:limit].rstrip(".,;:")


def _similarity(a: str, b: str) -> float:
    """difflib ratio, or the share of the shorter text found in the longer in runs of 4+ characters.

    The release's annotator judges sentences while a path step is a line, and a MATH line often holds several
    sentences (or a sentence spans lines): coverage lets a sentence find the line that contains it.
    """
    short, long = sorted((a, b), key=len)
    if not short or short == long:
        return float(bool(short))
    if len(short) >= 8 and short in long:
        return 0.9
    matcher = SequenceMatcher(None, short, long, autojunk=False)
    if len(short) < 8:
        return matcher.ratio()
    covered = sum(size for _, _, size in matcher.get_matching_blocks() if size >= 4) / len(short)
    return max(matcher.ratio(), min(covered, 0.9) if covered >= _COVER_AT else 0.0)  # never above containment


def _monotone(scores: list[list[float]]) -> list[int]:
    """Non-decreasing step indices with the greatest total similarity (annotators critique in order).

    Moving on to a new step earns a tiny bonus, so two verdicts on identical lines ("= 5") take one line each.
    """
    back: list[list[int]] = []
    best = scores[0][:]
    for row in scores[1:]:
        here, links = [0.0] * len(row), [0] * len(row)
        run, run_at = float("-inf"), -1  # best total of the previous row at a step before j
        for j, score in enumerate(row):
            move = run + _NEW_STEP_BONUS
            here[j], links[j] = (score + move, run_at) if move > best[j] else (score + best[j], j)
            if best[j] > run:
                run, run_at = best[j], j
        back.append(links)
        best = here
    path = [max(range(len(best)), key=lambda j: (best[j], -j))]
    for links in reversed(back):
        path.append(links[path[-1]])
    return path[::-1]


def _verbatim(norms: list[str], norm_steps: list[str]) -> bool:
    """Whether the verdicts repeat the first steps word for word, one each, in order, on distinct steps.

    Then the alignment is known without comparing every pair: each such verdict scores 1 on its own step and
    less than 1 on any other (the steps differ, and only identical texts score 1), and the diagonal also earns
    the most new-step bonuses, so it is the one best monotone path. The same anchors as the full comparison,
    without its quadratic matcher work (the common case: annotators that repeat each step before judging it).
    """
    return (
        len(norms) <= len(norm_steps)
        and all(norm and norm == step for norm, step in zip(norms, norm_steps, strict=False))
        and len(set(norm_steps)) == len(norm_steps)
    )


def _align(rows: list[_Row], steps: list[str] | None, problems: list[str]) -> list[StepVerdict]:
    """Give each verdict its path index: the step its sentence repeats, else the stated step number, else order.

    Several verdicts may share a step (sentences of one line). A verdict whose sentence matches no step goes after
    the previous verdict, or is dropped when the path has no step left for it.
    """
    if steps is None:
        return [StepVerdict(index=i, step=s or "", correct=c, explanation=e) for i, (s, _, c, e) in enumerate(rows)]
    anchors: dict[int, int] = {}
    if len(rows) * len(steps) > _MAX_PAIRS:
        problems.append(f"{len(rows)} verdicts on {len(steps)} steps: too many to match by text, aligned by order")
    elif rows and steps:
        norm_steps = [_normalise(s, _STEP_CHARS) for s in steps]
        norms = [_normalise(sentence, _SENTENCE_CHARS) if sentence else "" for sentence, *_ in rows]
        if _verbatim(norms, norm_steps):
            anchors = dict(enumerate(range(len(norms))))
        else:
            scores = [[s if (s := _similarity(norm, t)) >= _MATCH_AT else 0.0 for t in norm_steps] for norm in norms]
            anchors = {i: j for i, j in enumerate(_monotone(scores)) if scores[i][j] > 0}
    verdicts: list[StepVerdict] = []
    last = -1
    for i, (sentence, number, correct, why) in enumerate(rows):
        index = anchors.get(i)
        if index is None:
            later = [j for k, j in anchors.items() if k > i]
            high = min(later) if later else len(steps) - 1
            if number is not None and max(last, 0) <= number - 1 <= high:
                index = number - 1
            elif last + 1 <= high:
                index = last + 1
            elif later:
                index = last  # between two verdicts on one line: another sentence of that line
            if index is not None and sentence:
                problems.append(f"step sentence not found in the path, aligned by order: {sentence[:80]!r}")
        if index is None:
            problems.append(f"verdict beyond the path's {len(steps)} steps dropped: {(sentence or '')[:80]!r}")
            continue
        last = index
        verdicts.append(StepVerdict(index=index, step=sentence or steps[index], correct=correct, explanation=why))
    return verdicts
