"""How well the symbolic step checker finds first errors: ProcessBench (GSM8K, MATH) and GSM8K references.

``amc.steps.first_false_arithmetic`` flags the first step stating a false arithmetic equation. Against the human
labels of ProcessBench (0-based first wrong step, -1 none) this reports, for the flagged solutions:

- precision: share of flagged solutions that are labelled erroneous (target >= 0.90 on GSM8K);
- exact: share of flagged solutions whose flagged step is the labelled first error (target >= 0.65 on GSM8K);
- recall: share of erroneous solutions flagged at all, and flagged at the right step.

It also counts GSM8K reference solutions with a flagged step (alarms on solutions taken as correct: the symbolic
injector starts from these), the time per solution, and a round trip through ``amc.perturb.inject``: how often an
injected error is found at the injected step and how often carrying it changes the final answer.

Run from the repository root: ``python bench/step_checks.py [--data ../shared/data]``.
Results are recorded in bench/RESULTS_step_checks.md.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from amc.answers import reference_answer, verify
from amc.perturb import MODES, inject
from amc.steps import claims, first_false_arithmetic, split


def processbench_figures(rows: list[dict]) -> dict[str, float | int]:
    """Flag counts and rates of ``first_false_arithmetic`` on ProcessBench rows (``steps``, ``label``)."""
    flagged = correct_flag = exact = erroneous = 0
    start = time.perf_counter()
    for row in rows:
        got = first_false_arithmetic(row["steps"])
        label = row["label"]
        erroneous += label >= 0
        if got is None:
            continue
        flagged += 1
        correct_flag += label >= 0
        exact += got == label
    elapsed = time.perf_counter() - start
    return {
        "solutions": len(rows),
        "erroneous": erroneous,
        "flagged": flagged,
        "precision": correct_flag / flagged if flagged else 0.0,
        "exact": exact / flagged if flagged else 0.0,
        "recall": correct_flag / erroneous if erroneous else 0.0,
        "exact_recall": exact / erroneous if erroneous else 0.0,
        "ms_per_solution": 1000 * elapsed / max(1, len(rows)),
    }


def gsm8k_reference_alarms(path: Path) -> dict[str, float | int]:
    """How many GSM8K reference solutions (taken as correct) the checker flags."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    flagged = sum(first_false_arithmetic(split(r["answer"])) is not None for r in rows)
    elapsed = time.perf_counter() - start
    return {
        "solutions": len(rows),
        "flagged": flagged,
        "rate": flagged / len(rows),
        "ms_per_solution": 1000 * elapsed / len(rows),
    }


def injection_round_trip(path: Path, n: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per mode: share of injections found at the injected step, and share whose carried final answer changed."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    picked = []
    for row in rng.sample(rows, n):
        steps = split(row["answer"])
        ks = [i for i, s in enumerate(steps) if any(c.true and c.simple for c in claims(s))]
        if ks and first_false_arithmetic(steps) is None:
            picked.append((steps, rng.choice(ks), reference_answer(row["answer"], "gsm8k")))
    for mode in MODES:
        start = time.perf_counter()
        paths = [(inject(s, k, random.Random(k), carry=True, mode=mode), k, ref) for s, k, ref in picked]
        done = [(p, k, ref) for p, k, ref in paths if p is not None]
        out[mode] = {
            "solutions": len(picked),
            "injected": len(done) / len(picked),
            "found_at_k": sum(first_false_arithmetic(p.steps) == k for p, k, _ in done) / len(done),
            "answer_changed": sum(not verify(ref, p.final_answer) for p, _, ref in done) / len(done),
            "ms_per_injection": 1000 * (time.perf_counter() - start) / len(picked),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = ap.parse_args()
    for name in ("gsm8k", "math"):
        rows = json.loads((args.data / "processbench" / f"{name}.json").read_text())
        f = processbench_figures(rows)
        print(
            f"processbench/{name}.json: solutions={f['solutions']} erroneous={f['erroneous']} flagged={f['flagged']} "
            f"precision={f['precision']:.3f} exact={f['exact']:.3f} recall={f['recall']:.3f} "
            f"exact_recall={f['exact_recall']:.3f} ms/solution={f['ms_per_solution']:.2f}"
        )
    for split_name in ("train", "test"):
        g = gsm8k_reference_alarms(args.data / "gsm8k" / f"{split_name}.jsonl")
        print(
            f"gsm8k/{split_name}.jsonl references: solutions={g['solutions']} flagged={g['flagged']} "
            f"rate={g['rate']:.4f} ms/solution={g['ms_per_solution']:.2f}"
        )
    for mode, f in injection_round_trip(args.data / "gsm8k" / "train.jsonl").items():
        print(
            f"inject mode={mode} carry=True on gsm8k/train.jsonl: solutions={f['solutions']} "
            f"injected={f['injected']:.3f} found_at_k={f['found_at_k']:.3f} "
            f"answer_changed={f['answer_changed']:.3f} ms/injection={f['ms_per_injection']:.2f}"
        )


if __name__ == "__main__":
    main()
