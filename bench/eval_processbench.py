"""`checks` as a ProcessBench critic: F1 per subset, and how long the whole benchmark takes (bounded inputs).

For each ProcessBench file it runs amc's symbolic critic (``amc eval processbench --critic checks``'s code path:
:class:`amc.evaluate.critic.ChecksCritic`) and records ``acc_error``, ``acc_correct``, ``f1`` and the wall time.
The full ProcessBench has 3,400 solutions (gsm8k 400, math 1000, olympiadbench 1000, omnimath 1000); only gsm8k and
math are on this machine, so the 3,400-solution timing uses gsm8k once and math three times (math solutions are the
longer, harder ones of the two: a conservative stand-in for olympiadbench and omnimath).

The machine is shared, so next to wall time it records CPU seconds (of this process and its worker processes),
which do not grow with other people's load. It also times every step check alone (:func:`amc.steps.claims`) to
show that no step comes near the checker's cooperative deadline (``claims``' ``timeout``, 1 s): the answers are
decided by the checks, not by a clock.

Run from the repository root: ``python bench/eval_processbench.py [--data ../shared/data/processbench]``.
Results are recorded in bench/RESULTS_eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from amc.evaluate.critic import ChecksCritic
from amc.evaluate.items import load_items
from amc.evaluate.processbench import evaluate
from amc.steps import claims


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: what the work costs, whatever else the machine runs."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def step_times(items) -> dict[str, float | int]:
    """Seconds per step check: the slowest, the median, how many took over 0.1 s and over half the deadline."""
    times = []
    for item in items:
        for step in item.steps:
            t = time.perf_counter()
            claims(step)
            times.append(time.perf_counter() - t)
    return {"steps": len(times), "max_s": max(times), "median_ms": 1000 * statistics.median(times),
            "over_0.1s": sum(t > 0.1 for t in times), "over_0.5s": sum(t > 0.5 for t in times)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/processbench"))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    }
    subsets = {}
    for name in ("gsm8k", "math"):
        items = load_items(args.data / f"{name}.json")
        _, m = evaluate(ChecksCritic(workers=args.workers), items)
        subsets[name] = {k: m[k] for k in ("acc_error", "acc_correct", "f1", "n", "seconds")}
        print(name, json.dumps(subsets[name]), flush=True)
    out["subsets"] = subsets
    gsm8k, math = load_items(args.data / "gsm8k.json"), load_items(args.data / "math.json")
    full = gsm8k + math * 3
    cpu0, start = _cpu_seconds(), time.perf_counter()
    ChecksCritic(workers=args.workers).critique(full)
    out["all_3400_seconds"] = round(time.perf_counter() - start, 2)
    out["all_3400_cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)
    print(
        f"3400 solutions: {out['all_3400_seconds']} s wall, {out['all_3400_cpu_seconds']} s CPU "
        f"(this process and its workers), load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    out["step_times"] = step_times(gsm8k + math)
    print("step checks:", json.dumps(out["step_times"]), flush=True)


if __name__ == "__main__":
    main()
