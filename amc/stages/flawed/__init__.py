"""Strategies that make flawed paths from correct ones, for the ``inject`` stage.

- :mod:`~amc.stages.flawed.resample` (RG2): keep the steps before k, the actor continues at a high temperature;
- :mod:`~amc.stages.flawed.typed` (RG3): the injector rewrites step k with a named error type, the actor continues;
- :mod:`~amc.stages.flawed.symbolic`: an arithmetic claim of step k is perturbed with no model (:mod:`amc.perturb`).

Each strategy is a function ``(bases by problem, ctx) -> Built``; :mod:`~amc.stages.flawed.common` holds what they
share (drawing k, picking bases, continuation requests) and the stage-wide dedup and balance.
"""

from amc.stages.flawed.common import Built, balance, dedup, draw_step, pick_bases

__all__ = ["Built", "balance", "dedup", "draw_step", "pick_bases"]
