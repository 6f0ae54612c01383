"""Final answers: find them in a solution (``extract``) and decide whether two agree (``verify``).

Two verbs, like Math-Verify. ``verify`` answers plain numbers itself (most GSM8K pairs: ``"$1,000"`` vs ``"1000"``,
``"18 dollars"`` vs ``"18"``) and sends everything else to math-verify. math-verify times out with
``signal.alarm``, which only works in a main thread and cannot interrupt long C-level big-integer work, so it runs
in a small pool of forked worker processes that send back bools only; a worker that overruns its deadline is
killed and the pool recreated.

Whether an answer is graded depends on its text only, never on the machine's load: :func:`too_costly` refuses, by
deterministic size and structure budgets, what math-verify could not decide cheaply (a power tower ``9^{9^{9^9}}``,
an exponent or a factorial argument of five digits and more, ``(10^{100000})!``, a text over ``MAX_ANSWER_CHARS``);
such a pair is ``False`` on every machine. A guard (``GUARD_S`` seconds of the worker's CPU time, so that a loaded
machine does not stretch it; the parent's wall-clock stuck-worker deadline is a generous multiple of it) stays as a
last resort only, for what these budgets do not foresee: it never hangs the caller, and a pair it stops is
*undecided* (``None``), never ``False``, so that the stages reject the row (``grading_undecided``) instead of
grading it by the machine's load.

>>> extract("so she pays 3 * 6 = 18 dollars. The answer is $18.")
'18'
>>> verify("\\\\frac{3}{4}", "0.75")
True
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.pool
import os
import re
import signal
import threading
from contextlib import contextmanager
from fractions import Fraction

__all__ = ["cpu_workers", "extract", "verify", "verify_many", "grade", "reference_answer", "last_boxed", "split_gsm8k"]

# --------------------------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_ANSWER_IS_RE = re.compile(r"\banswer\s*(?:is|:)\s*:?", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")


def _braced(text: str, i: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[i]`` and the index after it; ``None`` when unbalanced."""
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            # \{ and \} are literal set braces, not group delimiters.
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None


def _box_content(text: str, i: int) -> str | None:
    """Content of the box whose command ends at ``text[i]``; ``None`` when unclosed or empty.

    The brace-less form ``\\boxed 5`` that MATH writes now and then is read to the closing ``$`` or the line end.
    """
    rest = text[i:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        got = _braced(text, i + len(rest) - len(stripped))
        return (got[0].strip() or None) if got is not None else None
    if rest[:1].isspace():
        return re.split(r"[$\n]", stripped, maxsplit=1)[0].strip() or None
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; ``None`` if absent.

    Only the last box counts: MATH solutions sometimes box intermediate results, and the final answer comes last.
    An unclosed box (a truncated solution) or an empty one gives ``None`` rather than a guess from an earlier box,
    because a reference answer read wrongly would mislabel every path of its problem.

    >>> last_boxed("so $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    boxes = list(_BOX_RE.finditer(text))
    return _box_content(text, boxes[-1].end()) if boxes else None


def _last_readable_box(text: str) -> str | None:
    """Like :func:`last_boxed`, but a truncated or empty last box gives way to the box before it (model outputs)."""
    for m in reversed(list(_BOX_RE.finditer(text))):
        content = _box_content(text, m.end())
        if content is not None:
            return content
    return None


def _clean_tail(answer: str) -> str:
    """Trim what follows an answer phrase: the sentence end, math delimiters, a trailing period."""
    answer = answer.strip()
    m = _SENTENCE_END_RE.search(answer)
    if m:
        answer = answer[: m.start()]
    answer = answer.strip().strip("$").strip()
    if answer.startswith("\\(") and answer.endswith("\\)"):
        answer = answer[2:-2].strip()
    return answer.rstrip(".").strip().strip("$").strip()


def extract(text: str) -> str | None:
    """The final answer stated in a solution text, or ``None`` when it states none.

    Looks, in order, for the last ``\\boxed{...}`` (or ``\\fbox``), the last "The answer is ..." / "the final
    answer is ..." (rest of its sentence, without ``$`` and the final period), and the last ``#### ...``.

    >>> extract("Total: 3 + 4 = <<3+4=7>>7\\n#### 7")
    '7'
    """
    if not text:
        return None
    boxed = _last_readable_box(text)
    if boxed is not None:
        return boxed
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        line = text[m.end() :].split("\n", 1)[0]
        answer = _clean_tail(line)
        if answer:
            return answer
    if "####" in text:
        answer = text.rsplit("####", 1)[1].split("\n", 1)[0].strip().rstrip(".").strip()
        if answer:
            return answer
    return None


def split_gsm8k(text: str) -> tuple[str, str | None]:
    """Split a GSM8K answer field into (solution, answer); the answer is ``None`` when there is no ``####``.

    The answer is the text after the last ``####`` with thousands separators removed ("1,000" -> "1000"), because
    GSM8K writes some answers with commas and graders compare numbers. The solution keeps its calculator notes.

    >>> split_gsm8k("She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7")
    ('She has 3 + 4 = <<3+4=7>>7 apples.', '7')
    """
    solution, sep, tail = text.rpartition("####")
    if not sep:
        return text.strip(), None
    return solution.strip(), tail.replace(",", "").strip() or None


def reference_answer(text: str, fmt: str) -> str | None:
    """The reference answer held in a dataset field, read by its format.

    ``fmt`` is ``"gsm8k"`` (text after the last ``####``, commas removed), ``"boxed"`` (last ``\\boxed{}``) or
    ``"plain"`` (the field itself, stripped). ``None`` when the field holds no answer in that format.

    >>> reference_answer("... = <<2*500=1000>>1,000 pens\\n#### 1,000", "gsm8k")
    '1000'
    """
    if fmt == "gsm8k":
        return split_gsm8k(text)[1]
    if fmt == "boxed":
        return last_boxed(text)
    if fmt == "plain":
        return text.strip() or None
    raise ValueError(f"unknown answer format {fmt!r}: expected 'plain', 'gsm8k' or 'boxed'")


# ------------------------------------------------------------------------------------------- fast path

_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_FRACTION_RE = re.compile(r"([-+]?\d+)\s*/\s*(\d+)|([-+]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_TEXT_CMD_RE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
_LEAD_VAR_RE = re.compile(r"^[A-Za-z]\w*\s*=\s*")
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|percent)$")
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{?\\circ\}?|°|\\circ)$")
# Words after a number that are mathematics, not units: "5 pi" is not 5.
_NOT_UNITS = {"pi", "sqrt", "mod", "and", "or", "over", "times", "plus", "minus", "i", "e", "x", "y", "n"}


def _plain_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, has_percent) when ``text`` is one number with optional $, commas, units or %; else ``None``."""
    s = text.strip()
    m = re.fullmatch(r"\\boxed\s*\{(.*)\}", s, flags=re.DOTALL)
    if m:
        s = m.group(1).strip()
    s = _TEXT_CMD_RE.sub(lambda t: " " + t.group(1) + " ", s)
    for glue in ("\\!", "\\,", "{,}"):  # LaTeX thin spaces and braced commas inside numbers: "32,\\!348"
        s = s.replace(glue, "," if glue == "{,}" else "")
    for junk in ("\\$", "$", "\\;", "\\ ", "~"):
        s = s.replace(junk, " ")
    s = _LEAD_VAR_RE.sub("", s.strip()).strip().rstrip(".").strip()
    s, n_deg = _DEGREE_RE.subn("", s)
    s, n_pct = _PERCENT_RE.subn("", s)
    s = s.strip()
    # Trailing unit words ("18 dollars", "5 cm", "3 square feet") must be separated from the number.
    m = re.fullmatch(r"(.*?\d)((?:\s+[A-Za-z][A-Za-z.]*){1,3})", s)
    if m:
        words = [w.rstrip(".").lower() for w in m.group(2).split()]
        if any(w in _NOT_UNITS or len(w) < 2 for w in words):
            return None
        s = m.group(1)
        s, more_pct = _PERCENT_RE.subn("", s)
        n_pct += more_pct
    s = s.strip()
    if _NUMBER_RE.fullmatch(s):
        return Fraction(s.replace(",", "")), bool(n_pct)
    m = _FRACTION_RE.fullmatch(s)
    if m:
        num, den = (m.group(1), m.group(2)) if m.group(1) else (m.group(3) + m.group(4), m.group(5))
        if int(den) == 0:
            return None
        return Fraction(int(num), int(den)), bool(n_pct)
    return None


def _fast_verdict(gold: str, pred: str) -> bool | None:
    """Decide plain-number pairs without math-verify; ``None`` hands the pair on to it."""
    g = _plain_number(gold)
    p = _plain_number(pred)
    if g is None or p is None:
        return None
    (gv, gp), (pv, pp) = g, p
    if gv == pv:
        return True
    if gp or pp:
        # math-verify takes "50%" as both 50 and 0.5; so do we.
        return (gp and gv / 100 == pv) or (pp and pv / 100 == gv)
    if round(float(gv), 6) == round(float(pv), 6):
        return None  # within math-verify's float rounding: let it make the call, so both paths agree.
    return False


# ------------------------------------------------------------------------------------- math-verify pool

_POOL: multiprocessing.pool.Pool | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()
# One batch at a time: a deadline only means something when no other caller's stuck pair holds the worker that our
# pair is queued behind. Each batch already uses every worker, so serialising callers costs little.
_BATCH_LOCK = threading.Lock()
_GRACE_S = 0.5  # parent-side slack over the worker's own alarms before the worker counts as stuck
# The parent's deadline is wall-clock while the worker's guard counts CPU seconds: on a loaded machine a pair's wall
# time is a multiple of its CPU time, and a fresh pool's start-up counts against the first pair's wait. The parent's
# deadline is only for a worker stuck in C code the guard cannot interrupt, so it is generous.
_STUCK_FACTOR = 4.0


def _stuck_after(timeout: float) -> float:
    """Wall-clock seconds the parent waits for one pair before it counts its worker as stuck."""
    return timeout * _STUCK_FACTOR + _GRACE_S


def _wrap(text: str) -> str:
    """Give math-verify a math environment: bare LaTeX like ``\\dfrac{1}{2}`` parses only inside ``$...$``."""
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


GUARD_S = 5.0  # last-resort guard of one math-verify comparison (CPU seconds of the worker); past it: undecided


class _GuardFired(BaseException):
    """Raised by the guard's alarm; a BaseException, so that math-verify's ``except Exception`` cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _GuardFired


@contextmanager
def _guard(seconds: float):
    """Interrupt the block with :class:`_GuardFired` after ``seconds`` of this process's CPU time (``ITIMER_PROF``:
    other processes on a loaded machine do not advance it) or ``_STUCK_FACTOR`` times that in wall-clock time,
    whichever comes first (a worker's main thread only; elsewhere the block runs unguarded and the deterministic
    budgets alone bound it)."""
    armed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not armed:
        yield
        return
    timers = (
        (signal.SIGPROF, signal.ITIMER_PROF, seconds),
        (signal.SIGALRM, signal.ITIMER_REAL, seconds * _STUCK_FACTOR),
    )
    previous = [signal.signal(sig, _on_alarm) for sig, _, _ in timers]
    for _, which, after in timers:
        signal.setitimer(which, max(after, 1e-6))
    try:
        yield
    finally:
        for (sig, which, _), handler in zip(timers, previous, strict=True):
            signal.setitimer(which, 0)
            signal.signal(sig, handler)


def _mv_parse(text: str) -> list:
    from math_verify import parse

    # math-verify's own alarms are off (None): one guard, ours, decides what counts as undecided
    parsed = parse(_wrap(text), parsing_timeout=None)
    if not parsed:
        parsed = parse(text, parsing_timeout=None)
    return parsed


def _mv_compare(gold: str, pred: str) -> bool:
    from math_verify import verify as mv_verify

    g = _mv_parse(gold)
    p = _mv_parse(pred)
    if not g or not p:
        return False
    return bool(mv_verify(g, p, timeout_seconds=None))


def _quiet_math_verify() -> None:
    """math-verify warns once that its own timeouts are off; they are off on purpose (``_guard`` replaces them)."""
    import math_verify.grader
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True


def _mv_verify(gold: str, pred: str, timeout: float) -> bool | None:
    """One math-verify comparison, gold first, inside a worker process: ``None`` (undecided) when the guard
    stops it, ``False`` for any other failure (an unparsable answer is not equivalent)."""
    try:
        _quiet_math_verify()
        with _guard(timeout):
            verdict = _mv_compare(gold, pred)
    except _GuardFired:
        return None
    except BaseException:  # noqa: BLE001 - a worker must answer, whatever sympy raised
        return False
    return verdict


def cpu_workers() -> int:
    """Worker processes for CPU work: the cores this process may run on (its affinity mask, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _in_daemon() -> bool:
    # A pool worker (daemonic) may not fork children of its own: there, math-verify runs in-process.
    return multiprocessing.current_process().daemon


def _get_pool(workers: int) -> multiprocessing.pool.Pool:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or workers > _POOL_SIZE:
            if _POOL is not None:
                _POOL.terminate()
            import math_verify  # noqa: F401 - imported before the fork so workers start warm

            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            _POOL, _POOL_SIZE = ctx.Pool(max(1, workers)), max(1, workers)
        return _POOL


def _kill_pool(pool: multiprocessing.pool.Pool) -> None:
    """Terminate a pool with a stuck worker; the next call creates a fresh one."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is pool:
            _POOL, _POOL_SIZE = None, 0
    pool.terminate()


@atexit.register
def _shutdown() -> None:
    if _POOL is not None:
        _POOL.terminate()


def _run_in_pool(pairs: list[tuple[str, str]], timeout: float, workers: int) -> list[bool | None]:
    """math-verify on each pair in worker processes; a pair whose worker overruns its deadline (or dies) is
    ``None``: undecided."""
    if _in_daemon():
        return [_mv_verify(g, p, timeout) for g, p in pairs]
    with _BATCH_LOCK:
        return _run_batch(pairs, timeout, workers)


def _run_batch(pairs: list[tuple[str, str]], timeout: float, workers: int) -> list[bool | None]:
    results: list[bool | None] = [None] * len(pairs)
    pending = list(range(len(pairs)))
    while pending:
        pool = _get_pool(workers)
        handles = {i: pool.apply_async(_mv_verify, (pairs[i][0], pairs[i][1], timeout)) for i in pending}
        stuck = None
        finished: set[int] = set()
        # Tasks are dispatched in order, so when we wait on the earliest unfinished one it is already running:
        # its deadline starts then, and a stuck task costs about `timeout`, not `timeout` times the queue length.
        for i in pending:
            try:
                results[i] = handles[i].get(_stuck_after(timeout))
            except multiprocessing.TimeoutError:
                stuck = i
                break
            except Exception:  # noqa: BLE001 - a crashed worker (e.g. out of memory) decided nothing
                results[i] = None
            finished.add(i)
        if stuck is None:
            break
        finished.add(stuck)  # undecided: its worker outlived the guard (e.g. C-level big-integer work)
        # Keep what finished before the pool dies, retry the rest in a fresh pool.
        for i in pending:
            if i not in finished and handles[i].ready():
                try:
                    results[i] = handles[i].get(0)
                except Exception:  # noqa: BLE001
                    results[i] = None
                finished.add(i)
        _kill_pool(pool)
        pending = [i for i in pending if i not in finished]
    return results


# ----------------------------------------------------------------------------------------------- budgets
MAX_ANSWER_CHARS = 512  # a final answer longer than this is not graded (it is no final answer)
_NESTED_POWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?\s*[\w.]+\s*\^|\*\*[^*]*\*\*")
_BIG_EXPONENT = re.compile(r"(?:\^|\*\*)\s*[{(]?\s*[+]?\d{5,}")
_BIG_FACTORIAL = re.compile(r"(?:\d{5,}|[)}])\s*!")
_BIG_SUM_BOUND = re.compile(r"\\(?:sum|prod)\s*_\s*\{[^{}]*\}\s*\^\s*\{?[^{}]*(?:\^|\d{5,})")


def too_costly(text: str) -> bool:
    """Whether an answer's text is beyond the grading budget, decided from the text alone (so on every machine
    alike): too long, a power tower, an exponent or factorial argument of five digits or more, a factorial of an
    expression, a sum or product with a huge bound.

    >>> too_costly("9^{9^{9^{9}}}"), too_costly("(10^{100000})!"), too_costly("2^{10}"), too_costly("5!")
    (True, True, False, False)
    """
    return (
        len(text) > MAX_ANSWER_CHARS
        or bool(_NESTED_POWER.search(text))
        or bool(_BIG_EXPONENT.search(text))
        or bool(_BIG_FACTORIAL.search(text))
        or bool(_BIG_SUM_BOUND.search(text))
    )


# ----------------------------------------------------------------------------------------------- verify


def verify(gold: str, pred: str | None, timeout: float | None = None) -> bool | None:
    """Whether ``pred`` is mathematically equivalent to ``gold`` (gold first, as math-verify expects).

    Plain numbers are compared here; anything else goes to math-verify in a worker process, stopped by a
    last-resort guard after about ``timeout`` seconds (default ``GUARD_S``): then the answer is ``None``,
    undecided, never a guess. ``None`` as ``pred`` (no answer extracted) is never correct.

    >>> verify("50\\\\%", "50"), verify("3", "x = 3"), verify("18", "$18.00")
    (True, True, True)
    """
    return verify_many([(gold, pred)], timeout=timeout, workers=1)[0]


def verify_many(
    pairs: list[tuple[str, str | None]], timeout: float | None = None, workers: int | None = None
) -> list[bool | None]:
    """``verify`` on many (gold, pred) pairs: plain numbers in-process, the rest across ``workers`` processes
    (default: one per core this process may use, :func:`cpu_workers`). Each verdict is ``True``, ``False``, or
    ``None`` for a pair the last-resort guard (``timeout``, default ``GUARD_S``) stopped: undecided, which a
    caller must not count as either; the stages turn it into a ``grading_undecided`` reject.

    Batches from several threads take turns on the shared pool, so that one caller's stuck pair never eats into
    the deadline of another caller's pair.
    """
    guard = GUARD_S if timeout is None else timeout
    out: list[bool | None] = [None] * len(pairs)
    slow: list[int] = []
    for i, (gold, pred) in enumerate(pairs):
        if pred is None or not str(pred).strip() or gold is None or not str(gold).strip():
            out[i] = False
            continue
        # Identical answers agree even where math-verify cannot parse them ("\\text{(C)}").
        fast = True if str(gold).strip() == str(pred).strip() else _fast_verdict(str(gold), str(pred))
        if fast is None and (too_costly(str(gold)) or too_costly(str(pred))):
            fast = False  # beyond the grading budget: decided by the text, not by how long math-verify would take
        if fast is None:
            slow.append(i)
        else:
            out[i] = fast
    if slow:
        done = _run_in_pool([(str(pairs[i][0]), str(pairs[i][1])) for i in slow], guard, workers or cpu_workers())
        for i, ok in zip(slow, done, strict=True):
            out[i] = ok
    return out


def grade(gold: str, text: str) -> tuple[str | None, bool | None]:
    """Extract the final answer of a solution text and verify it: ``(answer or None, correct)``; ``correct`` is
    ``None`` when the grading guard stopped (undecided).

    >>> grade("7", "3 + 4 = 7\\nThe answer is 7.")
    ('7', True)
    """
    pred = extract(text)
    return pred, verify(gold, pred)
