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
  # Run 2: the prefill matmul's variants (a short sweep), prefill with the winner at 2048 rows (long prompts) and
  # with matmulTuningFor's pick (short ones), decode with the in-plan greedy pick, the large-batch matmul path, serve.
  mmsweep) run mm-sweep 110 node .devdist/bench/prefill_matmul.js --m 128,2048 --shapes geglu,down --formats float32 --reps 3 --min-ms 10 \
             --tunings 'auto;base;big;big16;wide;tall;small;split4;split8;big,sg=32;base,sg=32;small,splitk=4' --out "$OUT/mm-sweep.json" ;;
  prefill) W=$(python3 bench/results/pick_matmul.py "$OUT/mm-sweep.json" 2048 2>/dev/null); echo "winner at 2048 rows: $W"
           run prefill-f32-auto 70 node $G --fused-prefill on --prefill-lens 128,2048 --first-token-len 512 --reps 3 --out "$OUT/prefill-f32-auto.json"
           [ -n "$W" ] && GRIFFIN_PREFILL_MM="$W" run prefill-f32-win 80 node $G --fused-prefill on --prefill-lens 2048,8192 --first-token-len 0 --reps 3 --out "$OUT/prefill-f32-win.json" ;;
  decode) run decode-bf16 70 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy,0.8 --dtype bfloat16 --queued on --out "$OUT/decode-bf16.json" ;;
  big) run big-bf16 80 node $G --batches 16,32 --fused on --prompt-len 128 --new-tokens 32 --raw-steps 32 --sampling greedy --dtype bfloat16 --queued on --matmul-rows 16,0 --out "$OUT/big-bf16.json" ;;
  # Run 3: decode after the GEMV changes' final defaults (bf16 b 1, 8; int8 and int4 b 1), prefill 8192 + first token.
  decode3) run decode3-bf16 70 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy,0.8 --dtype bfloat16 --queued on --out "$OUT/decode3-bf16.json"
           for d in int8 int4; do run decode3-$d 110 node $G --batches 1 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy --dtype $d --queued on --out "$OUT/decode3-$d.json"; done ;;
  prefill3) run prefill3-f32 90 node $G --fused-prefill on --prefill-lens 128,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill3-f32.json" ;;
esac; done
echo "total $(( $(date +%s) - t0 )) s"
