#!/bin/bash
# The H200 leases of the fifth session (2026-12-03): run from the repo root on the device machine with .device-bundle
# and .devdist carried; results into $OUT (at most 8 files come back: one log, JSONs per step).
# Usage: bash bench/results/2026-12-03-h200-session5.sh STEP...
source .device-bundle/env.sh
cd "$(dirname "$0")/../.." || exit 1
t0=$(date +%s)
LOG="$OUT/steps.log"
run() { local name=$1 lim=$2; shift 2; echo "== $name ($(( $(date +%s) - t0 )) s)" | tee -a "$LOG"; timeout "$lim" "$@" > /tmp/$name.log 2>&1; echo "rc=$? ($(( $(date +%s) - t0 )) s)" | tee -a "$LOG"; cat /tmp/$name.log >> "$LOG"; tail -c 700 /tmp/$name.log; }
G=".devdist/bench/generate.js --config 2b --backend webgpu"
T="disable_robustness,skip_validation"
for s in "$@"; do case $s in
  # Run 1: what Dawn's shader index clamps and API validation cost (GRIFFIN_DAWN_TOGGLES), matmul / prefill / decode.
  mmtog) run mm-plain 60 node .devdist/bench/prefill_matmul.js --m 2048 --shapes dd,geglu,down --formats float32 --reps 3 --min-ms 5 --tunings auto --out "$OUT/mm-plain.json"
         GRIFFIN_DAWN_TOGGLES=disable_robustness run mm-rob 60 node .devdist/bench/prefill_matmul.js --m 2048 --shapes dd,geglu,down --formats float32 --reps 3 --min-ms 5 --tunings auto --out "$OUT/mm-rob.json" ;;
  pretog) run pre-plain 80 node $G --fused-prefill on --prefill-lens 128,2048 --first-token-len 512 --reps 5 --out "$OUT/pre-plain.json"
          GRIFFIN_DAWN_TOGGLES=$T run pre-tog 80 node $G --fused-prefill on --prefill-lens 128,2048 --first-token-len 512 --reps 5 --out "$OUT/pre-tog.json" ;;
  dectog) run dec-plain 90 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 128 --raw-steps 128 --sampling greedy --dtype bfloat16 --queued on --out "$OUT/dec-plain.json"
          GRIFFIN_DAWN_TOGGLES=$T run dec-tog 90 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 128 --raw-steps 128 --sampling greedy --dtype bfloat16 --queued on --out "$OUT/dec-tog.json" ;;
  # Run 2: the FMA ceiling under Dawn; GEMV rows / threads / strides at b = 1 and 8 (per-kind GPU times in the
  # profiles); prefill with bfloat16 weights; serve with short prompts and long answers (a chat's shape).
  fma) run fma 60 node .devdist/bench/fma_peak.js --out "$OUT/fma.json" ;;
  sweep1) run sweep1 150 node $G --batches 1 --fused on --prompt-len 16 --new-tokens 8 --raw-steps 128 --sampling greedy --dtype bfloat16 \
            --sweep 0x0,128x2,128x1,256x1,64x1,256x2,128x2x4,128x1x4 --out "$OUT/sweep1.json" ;;
  sweep8) run sweep8 150 node $G --batches 8 --fused on --prompt-len 16 --new-tokens 8 --raw-steps 64 --sampling greedy --dtype bfloat16 \
            --sweep 0x0,64x2,128x2,64x4x1,128x4x1,64x2x4,64x1x4,128x1x2,64x4x2x2x0x0x2 --out "$OUT/sweep8.json" ;;
  prebf) run pre-bf16 80 node $G --fused-prefill on --dtype bfloat16 --prefill-lens 128,2048 --first-token-len 512 --reps 5 --out "$OUT/pre-bf16.json" ;;
  servechat) run serve-chat 150 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 32 --requests 2 --max-tokens 256 --prompt-len 32 --out "$OUT/serve-chat.json" ;;
  # Run 3 (final): decode b 1 / 8 over 256 steps, prefill float32, the PyTorch/HF peer, serve (128-token prompts, 3 x 64).
  fdecode) run f-decode 110 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 256 --sampling greedy,0.8 --dtype bfloat16 --queued on --out "$OUT/f-decode.json" ;;
  fprefill) GRIFFIN_TRACE=1 run f-prefill 100 node $G --fused-prefill on --prefill-lens 2048,8192,512,128 --first-token-len 512 --reps 5 --out "$OUT/f-prefill.json" ;;
  fhf) run f-hf 170 python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048,8192 --batches 1,8 --out "$OUT/f-hf.json" ;;
  fserve) run f-serve 130 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 1,32 --out "$OUT/f-serve.json" ;;
  # Run 4: int8 / int4 at batch 1 (their random weights are packed on the host: ~60 s each).
  fcompact) for d in int8 int4; do run f-$d 110 node $G --batches 1 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 256 --sampling greedy --dtype $d --queued on --out "$OUT/f-$d.json"; done ;;
  # Run 4: the ordering effect: each greedy stream three times in a row, host phases over each whole run.
  order) run order1 100 node $G --batches 1 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 64 --sampling greedy --dtype bfloat16 --queued on --repeat 3 --trace-runs --out "$OUT/order1.json"
         run order8 100 node $G --batches 8 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 64 --sampling greedy --dtype bfloat16 --queued on --repeat 3 --trace-runs --out "$OUT/order8.json" ;;
  # Run 5: coalesced tile loads (the matmul's coalesce knob) alone and inside the prefill.
  coal) run mm-co 90 node .devdist/bench/prefill_matmul.js --m 2048,128 --shapes dd,geglu,down --formats float32 --reps 3 --min-ms 5 \
          --tunings 'auto;coalesce=1;splitk=8,spread=1,unroll=1,coalesce=1' --out "$OUT/mm-co.json"
        run pre-base 60 node $G --fused-prefill on --prefill-lens 2048 --first-token-len 8 --reps 5 --out "$OUT/pre-base.json"
        GRIFFIN_PREFILL_MM=coalesce=1 run pre-co 60 node $G --fused-prefill on --prefill-lens 2048 --first-token-len 8 --reps 5 --out "$OUT/pre-co.json" ;;
  # Run 6: coalesced loads by default for the products without the fused norm (down, out, o, k, v).
  coal2) run pre-co2 100 node $G --fused-prefill on --prefill-lens 2048,128 --first-token-len 512 --reps 5 --out "$OUT/pre-co2.json" ;;
esac; done
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
