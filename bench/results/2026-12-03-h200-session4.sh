#!/bin/bash
# The H200 leases of the fourth session (2026-12-03): run from the repo root on the device machine with .device-bundle
# and .devdist carried; results into $OUT (at most 8 files come back: one log, JSONs merged per step).
# Usage: bash bench/results/2026-12-03-h200-session4.sh STEP...
source .device-bundle/env.sh
cd "$(dirname "$0")/../.." || exit 1
t0=$(date +%s)
LOG="$OUT/steps.log"
run() { local name=$1 lim=$2; shift 2; echo "== $name ($(( $(date +%s) - t0 )) s)" | tee -a "$LOG"; timeout "$lim" "$@" > /tmp/$name.log 2>&1; echo "rc=$? ($(( $(date +%s) - t0 )) s)" | tee -a "$LOG"; cat /tmp/$name.log >> "$LOG"; tail -c 900 /tmp/$name.log; }
G=".devdist/bench/generate.js --config 2b --backend webgpu"
for s in "$@"; do case $s in
  # Short-chunk matmul tunings (for MATMUL_ORDER): every 2B product at 128-1024 rows.
  mmshort) run mm-short 150 node .devdist/bench/prefill_matmul.js --m 128,256,512,1024 --shapes dd,geglu,down,kv --formats float32 --reps 3 --min-ms 5 \
             --tunings 'auto;split4;base,splitk=2;split8;small;small,splitk=2;small,splitk=4;bm=32,bn=64,bk=16,tm=4,tn=4,splitk=2;bm=32,bn=64,bk=16,tm=4,tn=4,splitk=4;bm=32,bn=32,bk=16,tm=4,tn=4,splitk=2' --out "$OUT/mm-short.json" ;;
  # 32 rows (serve's batch): the step's profile on the matmul path.
  big) run big 90 node $G --batches 32 --fused on --prompt-len 128 --new-tokens 32 --raw-steps 32 --sampling greedy --dtype bfloat16 --queued on --out "$OUT/big.json" ;;
  # b = 1 / 8 over 256 steps (the 64-step window of the third session was noisy).
  decode) run decode 110 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 256 --sampling greedy,0.8 --dtype bfloat16 --queued on --out "$OUT/decode.json" ;;
  9b) run 9b 120 node .devdist/bench/generate.js --config 9b --backend webgpu --batches 1 --fused on --prompt-len 128 --new-tokens 128 --raw-steps 128 --sampling greedy --dtype bfloat16 --queued on --out "$OUT/9b.json" ;;
  prefill) GRIFFIN_TRACE=1 run prefill 90 node $G --fused-prefill on --prefill-lens 128,2048,8192 --first-token-len 512 --reps 3 --out "$OUT/prefill.json" ;;
  serve) run serve 240 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 1,32 --out "$OUT/serve.json" ;;
  hf) run hf 170 python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048,8192 --batches 1,8 --out "$OUT/hf.json" ;;
  # Run 2: split-K at 2048 rows (unswept before), prefill with the new MATMUL_ORDER against the old pick at 2048 rows,
  # the decode matmul path at 8 and 16 rows against the GEMVs (split-K since the third session).
  mm2048) run mm-2048 90 node .devdist/bench/prefill_matmul.js --m 2048 --shapes dd,geglu,down,kv --formats float32 --reps 3 --min-ms 5 \
             --tunings 'auto;base,splitk=2;split4;base' --out "$OUT/mm-2048.json" ;;
  prefill2) run prefill2 90 node $G --fused-prefill on --prefill-lens 128,512,2048 --first-token-len 512 --reps 3 --out "$OUT/prefill2.json"
            GRIFFIN_PREFILL_MM=splitk=1 run prefill2-old 60 node $G --fused-prefill on --prefill-lens 2048 --first-token-len 0 --reps 3 --out "$OUT/prefill2-old.json" ;;
  mid) run mid 120 node $G --batches 8,16 --fused on --prompt-len 128 --new-tokens 32 --raw-steps 64 --sampling greedy --dtype bfloat16 --queued on --matmul-rows 8,0 --out "$OUT/mid.json" ;;
  # Run 3 (final): decode b 1 / 8 over 256 steps, 16 / 32 rows, int8 / int4 b 1, prefill with the split-K order (and
  # split up to 16), serve at 32 clients with the bench's default requests (3 x 64 tokens) and with 2 x 256 tokens.
  final-decode) run f-decode 110 node $G --batches 1,8 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 256 --sampling greedy,0.8 --dtype bfloat16 --queued on --queue-depth 1,2 --out "$OUT/f-decode.json" ;;
  final-big) run f-big 80 node $G --batches 16,32 --fused on --prompt-len 128 --new-tokens 64 --raw-steps 64 --sampling greedy --dtype bfloat16 --queued on --out "$OUT/f-big.json" ;;
  final-prefill) run f-prefill 100 node $G --fused-prefill on --prefill-lens 2048,8192,512,128 --first-token-len 512 --reps 5 --out "$OUT/f-prefill.json"
                 GRIFFIN_PREFILL_MM_SPLIT=16 run f-prefill16 60 node $G --fused-prefill on --prefill-lens 512,128 --first-token-len 512 --reps 5 --out "$OUT/f-prefill16.json" ;;
  final-serve) run f-serve 110 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 1,32 --out "$OUT/f-serve.json"
               run f-serve256 110 node .devdist/bench/serve.js --config 2b --dtype bfloat16 --backend webgpu --clients 32 --requests 2 --max-tokens 256 --out "$OUT/f-serve256.json" ;;
  final-hf) run f-hf 80 python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048 --batches 1,8 --out "$OUT/f-hf.json" ;;
  final-compact) for d in int8 int4; do run f-$d 110 node $G --batches 1 --fused on --prompt-len 128 --new-tokens 256 --raw-steps 256 --sampling greedy --dtype $d --queued on --out "$OUT/f-$d.json"; done ;;
  # Run 3: the RG-LRU kernel's row blocks (helper N): sweep S (slices) x B (rows per workgroup) x L (unroll), C channels.
  lru32) run lru32 150 node $G --batches 32 --fused on --prompt-len 16 --new-tokens 4 --raw-steps 64 --sampling greedy --dtype bfloat16 \
           --sweep 0x0,0x0x0x0x16x0x0x0x0x0x16x8x4,0x0x0x0x16x0x0x0x0x0x16x4x4,0x0x0x0x16x0x0x0x0x0x8x16x4,0x0x0x0x32x0x0x0x0x0x8x8x4,0x0x0x0x16x0x0x0x0x0x16x8x8,0x0x0x0x16x0x0x0x0x0x16x8x2 --out "$OUT/lru32.json" ;;
  lru1) run lru1 150 node $G --batches 1,8 --fused on --prompt-len 16 --new-tokens 4 --raw-steps 256 --sampling greedy --dtype bfloat16 \
           --sweep 0x0,0x0x0x0x16x0x0x0x0x0x16x0x4,0x0x0x0x16x0x0x0x0x0x16x0x8,0x0x0x0x16x0x0x0x0x0x16x0x16,0x0x0x0x8x0x0x0x0x0x32x0x4,0x0x0x0x32x0x0x0x0x0x8x0x4,0x0x0x0x16x0x0x0x0x0x8x0x4 --out "$OUT/lru1.json" ;;
esac; done
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
