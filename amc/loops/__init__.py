"""Critique in the loop: at test time (:mod:`amc.loops.testtime`, ``amc loop``), in self-training
(:mod:`amc.loops.selftrain`, ``amc selftrain``), and self-talk training data (:mod:`amc.loops.selftalk`)."""
