#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules that decide what data a build produces: engine cache, fingerprints
# (plan.py), run directory, filter, critique formats, answers, steps, openai retries. Configured in
# bench/mutmut.cfg. Not part of CI; results per module go to bench/RESULTS.md by hand.
#
#   bash bench/mutation.sh                          # every module, one after the other
#   bash bench/mutation.sh 'amc.engine.cache*'      # one module's mutants (mutmut's name globs)
#   MODULE_TIMEOUT=600 bash bench/mutation.sh       # at most 10 minutes per module (unfinished mutants: "not run")
#
# Works on a scratch copy of the committed tree (git archive HEAD), so the checkout is never mutated, and prints
# killed / total per module, and the score without the surviving mutants bench/mutation_equivalent.txt lists as
# equivalent (no observable behaviour changes). AMC_MUTATION_DIR keeps the scratch copy somewhere known (a second
# run there reuses the mutants and the test tracing and reruns every mutant of the modules named; mutmut does not
# regenerate the mutants of a changed source file, so use a fresh folder after amc/ changes); JOBS sets
# parallel workers, NICE the niceness (19: the box is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=${AMC_MUTATION_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/amc-mutation.XXXXXX")}
mkdir -p "$SCRATCH"
git archive HEAD | tar -x -C "$SCRATCH"
cp bench/mutmut.cfg "$SCRATCH/setup.cfg"
# tests read the shared data beside the checkout (../shared/data from the mutated tree's root)
[ -e "$SCRATCH/shared" ] || ln -s "$ROOT/../shared" "$SCRATCH/shared"
cd "$SCRATCH"
work=$(mktemp -d)
export COLUMNS=250 HF_HUB_OFFLINE=1 HF_HOME="$work/hf_home" TMPDIR="$work" RAY_USAGE_STATS_ENABLED=0
start=$(date +%s)
# An editable install of amc maps `import amc` to the checkout, and mutmut drops sys.path entries that resolve to
# its working directory (mutants/): import the mutants through a folder of their own, first on the path.
mkdir -p "$SCRATCH/importable" && ln -sfn "$SCRATCH/mutants/amc" "$SCRATCH/importable/amc"
export PYTHONPATH="$SCRATCH/importable"
# One mutmut run per module, in this order, so that a time limit (MODULE_TIMEOUT seconds each) still leaves whole
# modules scored. Mutants are generated once; later runs reuse them and the test-coverage stats.
globs=("$@")
[ ${#globs[@]} -gt 0 ] || globs=("amc.engine.cache*" "amc.engine.plan*" "amc.stages.filter*" "amc.backends.openai*"
                               "amc.engine.rundir*" "amc.critique_format*" "amc.answers*" "amc.steps*")
first=1
for glob in "${globs[@]}"; do
  echo "== $glob $(date -u +%H:%M:%S)" >> "$SCRATCH/mutmut.log"
  limit=${MODULE_TIMEOUT:-1200}
  # the first run also generates the mutants and traces which tests reach which function (minutes)
  [ "$first" = 1 ] && limit=$(( limit + ${STATS_TIMEOUT:-1200} )) && first=0
  timeout "$limit" nice -n "${NICE:-19}" python -c '
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.argv = ["mutmut", *sys.argv[1:]]
from mutmut.__main__ import cli
cli()
' run --max-children "${JOBS:-2}" "$glob" >> "$SCRATCH/mutmut.log" 2>&1 || echo "mutmut: $glob stopped (rc $?)" >> "$SCRATCH/mutmut.log"
done
echo "mutmut ran $(( $(date +%s) - start )) s in $SCRATCH (log: $SCRATCH/mutmut.log)"
python "$ROOT/bench/mutation_scores.py" "$SCRATCH"
