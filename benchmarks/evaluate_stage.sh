#!/usr/bin/env bash
# The default run's evaluate stage, one arm after another, on copies of one finished run (the same
# trained adapter in every arm; a copy gets new file times, so the tuned adapter's fingerprint is new
# and it is generated, and exported for llamacpp, afresh in each arm, while the base model's cached
# generations and log-probs are reused as on any machine that ran the default job before).
#
#   benchmarks/evaluate_stage.sh RUN_DIR ARM...      ARM = backend[-quant][-cold]
#   e.g. benchmarks/evaluate_stage.sh runs/default hf llamacpp llamacpp-q8_0 hf-cold
#
# "-cold" empties the log-prob cache first. Arms run in the order given, in ./stage-runs/<n>-<arm>;
# each prints one JSON line: the stage's wall time, the tuned model's generation seconds, the tuned
# log-prob suites' seconds, the cache counts and the report's status. PYTHONPATH=... runs another
# checkout's code with this venv (e.g. a `git worktree` of an older commit); EXTRA_SET="key=value ..." adds
# run-config settings to every arm (e.g. EXTRA_SET=evaluate.logprob_backend=hf).
set -u
src=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
mkdir -p stage-runs
n=0
for arm in "$@"; do
  n=$((n + 1))
  IFS=- read -r backend quant cold <<< "$arm"
  if [ "$quant" = cold ]; then quant=; cold=cold; fi
  dir=stage-runs/$n-$arm
  rm -rf "$dir"; cp -r "$src" "$dir"
  if [ "$cold" = cold ]; then rm -f ~/.cache/tunelens/eval-generations/*-logprobs-v1.jsonl; fi
  sets=(--set explain.enabled=false --set evaluate.backend="$backend")
  if [ -n "$quant" ]; then sets+=(--set evaluate.quant="$quant"); fi
  for kv in ${EXTRA_SET:-}; do sets+=(--set "$kv"); done
  "$py" -m tunelens run --run-dir "$dir" --from evaluate --quiet "${sets[@]}" > "$dir.log" 2>&1
  rc=$?
  "$py" - "$dir" "$arm" "$rc" <<'PY'
import json, os, sys
d, arm, rc = sys.argv[1:]
run = json.load(open(f"{d}/run.json"))
cost = json.load(open(f"{d}/eval/results.json"))["cost"]
t = cost["tuned"]
summary = f"{d}/summary.json"
print(json.dumps({"arm": arm, "rc": int(rc), "evaluate_wall_s": run["stages"]["evaluate"].get("wall_s"),
                  "tuned_generation_s": t["generation_seconds"],
                  "tuned_logprob_suites_s": round(sum(t["suite_seconds"].get(s) or 0 for s in ("loss", "truthfulqa_mc", "bbq")), 1),
                  "cached_logprobs": {k: cost[k].get("cached_logprobs") for k in ("base", "tuned")},
                  "report": json.load(open(summary)).get("status") if os.path.exists(summary) else None}), flush=True)
PY
done
