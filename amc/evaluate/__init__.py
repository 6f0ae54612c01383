"""Evaluation of critics and critique loops.

- :mod:`amc.evaluate.items`: what a critic is scored on (ProcessBench, PRMBench, amc's own paths);
- :mod:`amc.evaluate.critic`: a critic (the symbolic ``checks``, or a model with amc's critic template and parser);
- :mod:`amc.evaluate.processbench`: first-error accuracy on erroneous and correct solutions, and their F1;
- :mod:`amc.evaluate.critic_eval`: verdict and first-error accuracy on an amc run, by strategy, type, difficulty;
- :mod:`amc.evaluate.loop_metrics`: transitions and Confidence-vs-Critique (CL, CS, RSS) of critique loops;
- :mod:`amc.evaluate.report`: any of these as markdown with plots.

Layering: this package never imports :mod:`amc.stages` or the engine's runner (only the request cache).
"""

from amc.evaluate.critic import ChecksCritic, Critic, ModelCritic, Prediction, critic_from_spec
from amc.evaluate.items import EvalItem, load_items
from amc.evaluate.processbench import evaluate, metrics_from_predictions

__all__ = [
    "ChecksCritic",
    "Critic",
    "EvalItem",
    "ModelCritic",
    "Prediction",
    "critic_from_spec",
    "evaluate",
    "load_items",
    "metrics_from_predictions",
]
