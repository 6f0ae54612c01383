"""``amc selftrain``: training-time critique-in-the-loop self-improvement (AutoMathCritique section 6).

Each iteration N, in its own folder ``iter-N/``:

1. explore: the current actor samples each training problem (``samples``; with ``difficulty_aware``, a problem
   whose solve rate in the previous exploration was below ``hard_solve_rate`` gets ``hard_samples``);
2. grade every sample against the reference;
3. critique the failures and refine them (``refinements`` each; the critic knows nothing but the question and the
   steps). With ``critic: off`` (the baseline) each failure gets as many fresh samples instead, so both arms make
   the same number of actor generations (``budget: equal``);
4. keep the correct originals and the correct refinements (``keep_per_critique`` per critique) as SFT rows in
   ``iter-N/train.parquet``: the solve prompt -> the correct solution (TRL prompt/completion);
5. fine-tune (``amc.train.sft.train_sft``) from the base model (``init: base``, the paper's choice) or from the
   last actor (``continue``) into ``iter-N/model``, which is the actor of the next iteration;
6. evaluate it on the held-out test problems (``iter-N/metrics.json``: accuracy overall and by difficulty, the
   share of hard problems in the training data, the generations spent).

``iter-0/metrics.json`` is the base model on the same test problems. Every step writes its output atomically and is
skipped when the output is there, and every engine request goes through ``cache.sqlite``: a killed run resumes.
``summary.json`` (and ``summary.png`` when matplotlib is installed) compare the iterations.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from amc.config import PipelineConfig
from amc.engine.store import atomic_write_bytes, atomic_write_json, read_records, write_records
from amc.errors import AmcError
from amc.loops.common import Actor, Engines, folder_digest
from amc.loops.rows import Attempt, CritiqueRow, Transition
from amc.loops.testtime import attempts_from, critique_round, exclusive, make_critic
from amc.prompts import load_template

TRAIN_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("problem_id", pa.string()),
        ("origin", pa.string()),
        ("difficulty", pa.int64()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("completion", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ]
)


def is_test(problem_id: str, fraction: float) -> bool:
    """Whether a problem is held out: a stable hash of its id (the same rule as the published splits)."""
    digest = hashlib.sha256(f"amc-split\x1f{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _resolve(name: str) -> str:
    try:
        from amc.models import resolve_model  # the named models registry (smollm2-135m-instruct, tiny-llama)
    except ImportError:
        return name
    return str(resolve_model(name))


class SelfTrainer:
    """One self-training run in ``folder`` (see the module docstring)."""

    def __init__(self, cfg: PipelineConfig, folder: Path, echo: Callable[[str], None] = lambda _: None):
        self.cfg, self.st, self.folder, self.echo = cfg, cfg.selftrain, folder, echo
        if cfg.models.actor.engine == "sim":
            raise AmcError(
                f"{cfg.name}: selftrain fine-tunes the actor; models.actor needs a model engine "
                "(transformers or vllm), not sim"
            )
        from amc.stages.problems import ProblemsStage

        problems = ProblemsStage().load(cfg)
        self.test = [p for p in problems if is_test(p.id, self.st.test_fraction)]
        self.train = [p for p in problems if not is_test(p.id, self.st.test_fraction)]
        if not self.test or not self.train:
            raise AmcError(
                f"{cfg.name}: {len(problems)} problems leave {len(self.train)} to train on and "
                f"{len(self.test)} to test on; add problems or change selftrain.test_fraction"
            )
        self.by_id = {p.id: p for p in problems}
        self.base = _resolve(cfg.models.actor.model)
        self.solve_t = load_template("solve", cfg.prompts_dir)

    # ------------------------------------------------------------------------------------------ engines
    def _actor(self, engines: Engines, model: str) -> Actor:
        block = self.cfg.models.actor.model_copy(update={"model": model})
        extra = {"weights": folder_digest(model)} if Path(model).is_dir() and model != self.base else None
        return Actor(engines.get(block, extra), self.cfg.seed, self.cfg.prompts_dir)

    def run(self) -> dict[str, Any]:
        """All iterations (resuming what is done); returns the summary."""
        engines = Engines(Path(self.st.cache) if self.st.cache else self.folder / "cache.sqlite")
        try:
            rows = [self._evaluate(engines, 0, self.base)]
            model = self.base
            for it in range(1, self.st.iterations + 1):
                model, row = self._iteration(engines, it, model)
                rows.append(row)
            requests = engines.counters()
        finally:
            engines.close()
        summary = {
            "critic": self.st.critic,
            "actor": self.cfg.models.actor.model,
            "base_model": self.base,
            "train_problems": len(self.train),
            "test_problems": len(self.test),
            "config": self.st.model_dump(),
            "iterations": rows,
            "requests": requests,
        }
        atomic_write_json(self.folder / "summary.json", summary)
        _plot(summary, self.folder / "summary.png")
        return summary

    # ------------------------------------------------------------------------------------------ steps
    def _evaluate(self, engines: Engines, it: int, model: str) -> dict[str, Any]:
        out = self.folder / f"iter-{it}" / "metrics.json"
        if out.is_file():
            return json.loads(out.read_text(encoding="utf-8"))
        self.echo(f"iter {it}: testing {model} on {len(self.test)} held-out problems")
        actor = self._actor(engines, model)
        n = {p.id: self.st.test_samples for p in self.test}
        texts = actor.solve(self.test, n, self.st.test_sampling, f"selftrain/test/it{it}")
        graded = [a for p in self.test for a in attempts_from(p, texts[p.id], 0, 0, "sample")]
        engines.release(actor.backend)
        write_records(out.parent / "test.parquet", graded, Attempt)
        by_d: dict[str, list[bool]] = {}
        for a in graded:
            by_d.setdefault(str(a.difficulty), []).append(a.correct)
        metrics = {
            "iteration": it,
            "model": model,
            "test_accuracy": _mean([a.correct for a in graded]),
            "test_accuracy_by_difficulty": {d: _mean(v) for d, v in sorted(by_d.items())},
        }
        atomic_write_json(out, metrics)
        return metrics

    def _iteration(self, engines: Engines, it: int, model: str) -> tuple[str, dict[str, Any]]:
        d = self.folder / f"iter-{it}"
        d.mkdir(parents=True, exist_ok=True)
        stats = self._dataset(engines, it, model, d)
        trained = d / "model"
        if stats["train_examples"] and not (trained / "amc_train.json").is_file():
            self.echo(f"iter {it}: fine-tuning on {stats['train_examples']} examples")
            self._sft(d / "train.parquet", self.base if self.st.init == "base" else model, trained)
        next_model = str(trained) if (trained / "amc_train.json").is_file() else model
        metrics = self._evaluate(engines, it, next_model)
        return next_model, {**metrics, **stats}

    def _dataset(self, engines: Engines, it: int, model: str, d: Path) -> dict[str, Any]:
        stats_file = d / "data_stats.json"
        if stats_file.is_file() and (d / "train.parquet").is_file():
            return json.loads(stats_file.read_text(encoding="utf-8"))
        st = self.st
        rates = self._previous_rates(it)
        hard = {p.id for p in self.train if rates.get(p.id, 1.0) < st.hard_solve_rate}
        n = {p.id: st.hard_samples if st.difficulty_aware and p.id in hard else st.samples for p in self.train}
        self.echo(f"iter {it}: exploring {sum(n.values())} samples of {len(self.train)} problems with {model}")
        actor = self._actor(engines, model)
        texts = actor.solve(self.train, n, st.sampling, f"selftrain/explore/it{it}")
        explored = [a for p in self.train for a in attempts_from(p, texts[p.id], 0, 0, "sample")]
        write_records(d / "explore.parquet", explored, Attempt)
        failures = [a for a in explored if not a.correct]
        extra: list[Attempt] = []
        critiques: list[CritiqueRow] = []
        transitions: list[Transition] = []
        if st.critic != "off" and failures:
            critic = make_critic(self.cfg, engines, st.critic, st.critique_sampling)
            self.echo(f"iter {it}: critiquing and refining {len(failures)} failures ({critic.name})")
            res = critique_round(
                self.by_id,
                failures,
                actor,
                critic,
                oracle=True,
                round_=1,
                sampling=st.refine_sampling,
                purpose=f"selftrain/it{it}",
                n_refine=st.refinements,
            )
            critiques = res.critiques
            for a, refs in zip(failures, res.refinements, strict=True):
                extra += [r for r in refs if r.correct][: st.keep_per_critique]
                transitions.append(
                    Transition(
                        problem_id=a.problem_id,
                        sample_index=a.sample_index,
                        round=1,
                        correct_before=False,
                        correct_after=bool(refs and refs[0].correct),
                        refined=bool(refs),
                        critic_verdict=None,
                        difficulty=a.difficulty,
                    )
                )
        elif st.budget == "equal" and failures:
            per_problem = Counter(a.problem_id for a in failures)
            more = {pid: c * st.refinements for pid, c in per_problem.items()}
            self.echo(f"iter {it}: resampling {sum(more.values())} times for {len(failures)} failures (no critic)")
            fresh = actor.solve([self.by_id[pid] for pid in more], more, st.sampling, f"selftrain/resample/it{it}")
            for pid, got in fresh.items():
                made = attempts_from(self.by_id[pid], got, 0, 1, "resample")
                extra += [a for a in made if a.correct][: per_problem[pid] * st.keep_per_critique]
        engines.release(actor.backend)
        write_records(d / "refinements.parquet", extra, Attempt)
        write_records(d / "critiques.parquet", critiques, CritiqueRow)
        write_records(d / "transitions.parquet", transitions, Transition)
        rows = self._train_rows(it, [a for a in explored if a.correct] + extra + self._references())
        atomic_write_bytes(d / "train.parquet", _parquet(rows))
        stats = self._stats(it, explored, failures, extra, rows, n, hard)
        atomic_write_json(stats_file, stats)
        return stats

    def _references(self) -> list[Attempt]:
        """The reference solutions of the first ``warmup_references`` training problems that have one."""
        from amc.stages.sample import reference_steps

        out = []
        for p in self.train:
            steps = reference_steps(p) if len(out) < self.st.warmup_references else None
            if steps:
                out.append(
                    Attempt(
                        problem_id=p.id,
                        sample_index=0,
                        round=0,
                        kind="reference",
                        text="\n".join(steps),
                        predicted_answer=p.answer,
                        correct=True,
                        difficulty=p.difficulty,
                    )
                )
        return out

    def _previous_rates(self, it: int) -> dict[str, float]:
        path = self.folder / f"iter-{it - 1}" / "explore.parquet"
        if it == 1 or not path.is_file():
            return {}
        tally: dict[str, list[bool]] = {}
        for a in read_records(path, Attempt):
            tally.setdefault(a.problem_id, []).append(a.correct)
        return {pid: sum(v) / len(v) for pid, v in tally.items()}

    def _train_rows(self, it: int, kept: Sequence[Attempt]) -> list[dict[str, Any]]:
        rows, seen = [], set()
        for a in kept:
            key = (a.problem_id, " ".join(a.text.split()))
            if key in seen or not a.text.strip():
                continue  # the same solution twice teaches nothing more
            seen.add(key)
            p = self.by_id[a.problem_id]
            prompt = [{"role": m.role, "content": m.content} for m in self.solve_t.render(question=p.question)]
            rows.append(
                {
                    "id": f"{a.problem_id}/it{it}/{a.kind}/{a.sample_index}/{len(rows)}",
                    "problem_id": a.problem_id,
                    "origin": a.kind,
                    "difficulty": a.difficulty,
                    "prompt": prompt,
                    "completion": [{"role": "assistant", "content": a.text.strip()}],
                }
            )
        return rows

    def _stats(
        self,
        it: int,
        explored: list[Attempt],
        failures: list[Attempt],
        extra: list[Attempt],
        rows: list[dict[str, Any]],
        n: dict[str, int],
        hard: set[str],
    ) -> dict[str, Any]:
        st = self.st
        rates: dict[str, list[bool]] = {}
        for a in explored:
            rates.setdefault(a.problem_id, []).append(a.correct)
        low = {pid for pid, v in rates.items() if sum(v) / len(v) < st.hard_solve_rate}
        generations = sum(n.values()) + (
            len(failures) * st.refinements if (st.critic != "off" or st.budget == "equal") else 0
        )
        return {
            "explore_samples": sum(n.values()),
            "explore_accuracy": _mean([a.correct for a in explored]),
            "hard_problems_sampled_more": len(hard) if st.difficulty_aware else 0,
            "failures": len(failures),
            "recovered": len(extra),
            "actor_generations": generations,
            "train_examples": len(rows),
            "train_by_origin": dict(Counter(r["origin"] for r in rows)),
            "hard_share_by_difficulty": _mean([(r["difficulty"] or 0) >= st.hard_difficulty for r in rows]),
            "hard_share_by_solve_rate": _mean([r["problem_id"] in low for r in rows]),
        }

    def _sft(self, data: Path, start: str, output: Path) -> None:
        from amc.train.sft import SFTSettings, train_sft

        s = self.st.sft
        train_sft(
            SFTSettings(
                model=start,
                data=str(data),
                output_dir=output,
                epochs=s.epochs,
                max_steps=s.max_steps,
                learning_rate=s.learning_rate,
                batch_size=s.batch_size,
                gradient_accumulation_steps=s.gradient_accumulation_steps,
                max_length=s.max_length,
                lora=s.lora,
                dtype=s.dtype,
                seed=self.cfg.seed,
                eval=False,
                show_progress=False,
            )
        )


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAIN_SCHEMA), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _mean(xs: Sequence[bool | float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0


def _plot(summary: dict[str, Any], path: Path) -> None:
    """Test accuracy per iteration, overall and per difficulty (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = summary["iterations"]
    its = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(its, [r["test_accuracy"] for r in rows], marker="o", color="black", label="all")
    for d in sorted({d for r in rows for d in r["test_accuracy_by_difficulty"]}):
        ax.plot(its, [r["test_accuracy_by_difficulty"].get(d) for r in rows], marker=".", label=f"difficulty {d}")
    ax.set(xlabel="iteration", ylabel="test accuracy", title=f"selftrain (critic: {summary['critic']})")
    ax.set_xticks(its)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_selftrain(
    cfg: PipelineConfig, out: Path | None = None, echo: Callable[[str], None] = lambda _: None
) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) the ``selftrain:`` block of a pipeline file; return the folder and the summary."""
    folder = Path(out or cfg.selftrain.out or cfg.run_path / f"selftrain-{cfg.selftrain.critic}")
    trainer = SelfTrainer(cfg, folder, echo)  # bad input fails here, before any engine starts
    with exclusive(folder):
        return folder, trainer.run()
