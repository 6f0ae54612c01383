"""Throughput of answer grading: the in-process fast path (GSM8K numbers) and math-verify in worker processes.

Reports, for real answers:

- GSM8K test references against their extracted answers (plain numbers: the fast path, no worker);
- MATH-500 answers against themselves wrapped in ``$...$`` (LaTeX: math-verify in the pool), 1 and 2 workers;
- a batch holding pathological answers (huge powers, factorials), which each cost about ``timeout`` seconds.

The pool is created once per worker count before timing, as a long-running stage would do.
Run from the repository root: ``python bench/answer_grading.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from amc import answers
from amc.answers import extract, reference_answer, verify_many


def _timed(pairs: list[tuple[str, str | None]], **kw: float) -> tuple[float, int]:
    start = time.perf_counter()
    got = verify_many(pairs, **kw)
    return time.perf_counter() - start, sum(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # its timeout warnings are expected here

    gsm = [json.loads(line) for line in (args.data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    pairs = [(reference_answer(r["answer"], "gsm8k"), extract(r["answer"])) for r in gsm]
    secs, ok = _timed(pairs)
    print(f"gsm8k/test fast path: pairs={len(pairs)} agree={ok} us/pair={1e6 * secs / len(pairs):.1f}")

    math = [json.loads(line) for line in (args.data / "math500" / "test.jsonl").read_text().splitlines()]
    latex = [(r["answer"], f"${r['answer']}$") for r in math]
    for workers in (1, 2):
        answers._kill_pool(answers._get_pool(workers))
        answers._get_pool(workers)  # warm: forked once, reused by every later call
        secs, ok = _timed(latex, workers=workers)
        print(
            f"math500 via math-verify, workers={workers}: pairs={len(latex)} agree={ok} "
            f"ms/pair={1000 * secs / len(latex):.2f}"
        )

    bad = [("5", "9^{9^{9^{9}}}"), ("5", "(10^{100000})!"), ("5", "\\sum_{k=1}^{10^9} k"), ("5", "10^{10^{10}}")]
    secs, ok = _timed(bad + latex[:20], timeout=1, workers=2)
    print(f"4 pathological + 20 normal pairs, timeout=1s, workers=2: seconds={secs:.2f} agree={ok}")


if __name__ == "__main__":
    main()
