#!/bin/bash
# The H200 lease of 2026-12-03 (second session): fused prefill, queued decode, serve slots, matmul sweep, HF peer.
# Run from the repo root on the device machine with .device-bundle and .devdist carried; results into $OUT.
source .device-bundle/env.sh
cd "$(dirname "$0")/../.." || exit 1
t0=$(date +%s)
run() { local name=$1 lim=$2; shift 2; echo "== $name ($(( $(date +%s) - t0 )) s)"; timeout "$lim" "$@" > "$OUT/$name.log" 2>&1; echo "rc=$? ($(( $(date +%s) - t0 )) s)"; tail -c 1500 "$OUT/$name.log"; }
G=".devdist/bench/generate.js --config 2b --backend webgpu"
run prefill-f32 150 node $G --fused-prefill both --prefill-lens 128,2048,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill-f32.json"
run decode-bf16 100 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy,0.8 --dtype bfloat16 --queued both --out "$OUT/decode-bf16.json"
run prefill-bf16 80 node $G --fused-prefill on --dtype bfloat16 --prefill-lens 128,2048,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill-bf16.json"
run serve-bf16 110 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 1,8,32 --out "$OUT/serve-bf16.json"
run hf-f32 70 python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048,8192 --batches 1 --out "$OUT/hf-f32.json"
run mm-sweep 50 node .devdist/bench/prefill_matmul.js --sweep --m 2048 --formats float32 --out "$OUT/mm-sweep.json"
echo "total $(( $(date +%s) - t0 )) s"
