#!/usr/bin/env bash
# Real-model proof of the trainer (issues 11 and 15), on CPU: SmolLM2-135M-Instruct as a critic.
#   1. amc critique data: bench/critic_data.yaml (GSM8K train problems, sim actor and annotator), built offline;
#   2. SFT of the critic on its sft_critic rows (amc train critic);
#   3. GRPO (CTRL) from that SFT critic, the sim actor refining (amc train critic --method grpo);
#   4. amc eval processbench on ProcessBench GSM8K items for the base, SFT and GRPO critics.
# Usage: bash bench/train_smollm2.sh OUT_DIR   (about an hour on a 2-core machine; set the sizes below;
# full fine-tuning of the 135M model in float32 takes about 3 GB with these settings)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/amc-train-smollm2}
PROBLEMS=${PROBLEMS:-200}
SFT_STEPS=${SFT_STEPS:-60}
GRPO_STEPS=${GRPO_STEPS:-20}
EVAL_ITEMS=${EVAL_ITEMS:-40}
mkdir -p "$OUT"
amc models pull smollm2-135m-instruct
amc build --config bench/critic_data.yaml -q --set run_dir="$OUT/run" --set source.limit="$PROBLEMS"
amc train critic --data "$OUT/run" \
  --model smollm2-135m-instruct --output "$OUT/sft" --full --max-length 512 --batch-size 2 \
  --max-steps "$SFT_STEPS" --lr 5e-5 --set logging_steps=1 -q
amc train critic --method grpo --data "$OUT/run" --model "$OUT/sft" --actor sim --output "$OUT/grpo" \
  --full --batch-size 4 --max-steps "$GRPO_STEPS" --lr 2e-6 --set logging_steps=1 \
  --set grpo.num_generations=4 --set grpo.max_completion_length=256 --set grpo.beta=0.04 -q
for critic in ${CRITICS:-smollm2-135m-instruct "$OUT/sft" "$OUT/grpo"}; do
  name=$(basename "$critic")
  amc eval processbench --critic "transformers:$critic" --data ../shared/data/processbench/gsm8k.json \
    --limit "$EVAL_ITEMS" --max-tokens 512 --json -o "$OUT/eval-$name" > "$OUT/eval-$name.json" || true
done
