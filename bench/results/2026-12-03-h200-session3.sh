#!/bin/bash
# The H200 lease of 2026-12-03 (third session), run 1: serve 2B bf16, PyTorch/HF peer, compact decode through the
# queued generate. Run from the repo root on the device machine with .device-bundle and .devdist carried; results
# into $OUT. Usage: bash bench/results/2026-12-03-h200-session3.sh STEP...   (no STEP: all of run 1)
source .device-bundle/env.sh
cd "$(dirname "$0")/../.." || exit 1
t0=$(date +%s)
run() { local name=$1 lim=$2; shift 2; echo "== $name ($(( $(date +%s) - t0 )) s)"; timeout "$lim" "$@" > "$OUT/$name.log" 2>&1; echo "rc=$? ($(( $(date +%s) - t0 )) s)"; tail -c 1200 "$OUT/$name.log"; }
G=".devdist/bench/generate.js --config 2b --backend webgpu"
steps=${*:-"features serve hf compact"}
for s in $steps; do case $s in
  features) run features 30 node -e "require('webgpu'); const g=require('webgpu').create([]); g.requestAdapter().then(a=>{console.log([...a.features].join(' ')); console.log(JSON.stringify({sub:a.info&&a.info.subgroupMinSize, max:a.info&&a.info.subgroupMaxSize}))})" ;;
  serve) run serve-bf16 200 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 1,8,32 --out "$OUT/serve-bf16.json" ;;
  hf) run hf-f32 170 python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048,8192 --batches 1,8 --out "$OUT/hf-f32.json" ;;
  compact) for d in bfloat16 int8 int4; do run decode-$d 60 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy --dtype $d --queued on --out "$OUT/decode-$d.json"; done ;;
  forward) run forward-f32 90 node .devdist/bench/forward.js --config 2b --backend webgpu --lens 128,2048 --fused both --out "$OUT/forward-f32.json" ;;
  mmsweep) run mm-sweep 120 node .devdist/bench/prefill_matmul.js --sweep --m 128,2048 --formats float32 --out "$OUT/mm-sweep.json" ;;
  prefill) run prefill-f32 150 node $G --fused-prefill on --prefill-lens 128,2048,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill-f32.json"
           run prefill-bf16 80 node $G --fused-prefill on --dtype bfloat16 --prefill-lens 128,2048,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill-bf16.json" ;;
esac; done
echo "total $(( $(date +%s) - t0 )) s"
