/**
 * Generation speed and memory: prefill and decode tokens/s, or a long run that samples RSS and
 * ms/token every `--every` tokens to show that neither grows with the sequence. Prints JSON.
 *   npx tsx bench/generate.ts --config tiny --backend cpu --prompt-len 256 --new-tokens 128
 *   npx tsx bench/generate.ts --model ckpt/ --long 20000 --every 1000
 *
 * --config names a randomly initialised model: tiny (tiny-a's shape), small, 2b-shaped (the
 * RecurrentGemma-2b shape; --layers / --vocab shrink it to fit a small machine).
 *
 * The fused WebGPU decode engine (src/engines/webgpu_decode) against tfjs ops, at several batch sizes:
 *   npx tsx bench/generate.ts --config 2b --backend webgpu --batches 1,8 --fused both --out r.json
 * --fused on|off|both (default: as GRIFFIN_FUSED_DECODE says), --batches 1,8 (default --batch).
 * Each run reports generation through the public path (model.stream from the prompt, per
 * --sampling greedy,0.8: the first token's time, which includes the prefill, then decode tokens/s
 * over the following steps; greedy takes the argmax on the GPU, other options draw on the GPU too
 * (src/generation/gpu_sampling.ts); an entry is T[/kK][/pP][/mM][/rR]: temperature, top-k, top-p,
 * min-p, repetition penalty, e.g. greedy,0.8,0.8/p0.95,0.8/k50/p0.95/r1.2; --gpu-sampling
 * on|off|both: off samples on the host, reading the logits back; both runs each way; --queued
 * on|off|both: steps queued ahead of the host, fed by the ids on the GPU (src/generation/step_queue.ts,
 * on by default where the engine applies), or off: each step's ids read back before the next step
 * is submitted; `queuedSteps` counts the steps queued; --queue-depth 1,2 repeats the queued runs with
 * one or two picks in flight, GRIFFIN_QUEUE_DEPTH, `aheadPicks` counting those submitted while
 * another was in flight; --repeat N measures each stream N times in a row, keys _rep2.. for the later
 * ones; --trace-runs adds each stream's host phases summed over its whole run, `hostPhasesMs`:
 * wait.ids is the host waiting on the GPU, the rest its own work), a bare decodeStep loop waited on once at the end (`rawTokensPerSec`: the GPU's pace), and
 * for the engine one profiled step (GPU timestamps per dispatch, summed per kernel kind, with the
 * bytes of weights each must read: GB/s). --sweep 64x8,128x4,256x2 repeats the engine's runs with
 * GEMV workgroups of T threads and at most R rows each (env GRIFFIN_FUSED_THREADS / _ROWS);
 * TxRxUxWxC also sets the strides per loop trip, compact weights' words per load and the RG-LRU
 * kernel's channels per workgroup (_UNROLL, _WORDS, _LRU_CHANNELS); TxRxUxWxCxDxXxK then the GEMV
 * reduction D (1 tree, 2 split: _REDUCE), its x loads X (1 ahead, 2 lazy: _XLOAD) and int8 / int4
 * unpacking K (1 convert, 2 the 2^23 trick: _UNPACK), then M the attention combine (1 serial, 2 split:
 * _COMBINE) and P RoPE (1 separate, 2 inside the partial attention kernel: _ROPE) (TxRxUxWxCxDxXxKxMxP),
 * then the RG-LRU kernel's input slices S, rows per workgroup B and gate-loop unroll L (_LRU_SLICES,
 * _LRU_ROWS, _LRU_UNROLL: TxRxUxWxCxDxXxKxMxPxSxBxL, e.g. 0x0x0x0x16x0x0x0x0x0x16x8x4);
 * 0 anywhere: the default. Greedy picks run
 * inside the step's plan (`inPlanPicks`; GRIFFIN_FUSED_ARGMAX=0: a separate pick before each step).
 * Many rows (src/engines/webgpu_decode/batched_matmul.ts): --matmul-rows 16,0 repeats every batch
 * with the step's weight products as tiled matmuls from that many rows (0: GEMVs only; env
 * GRIFFIN_DECODE_MATMUL_ROWS); --mm-sweep 'bm=32,bn=128/bm=16,bn=256,tm=4' repeats the engine's
 * runs (bare steps and the profile) with each matmul tiling (env GRIFFIN_DECODE_MM), e.g.
 *   npx tsx bench/generate.ts --config 2b --dtype bfloat16 --backend webgpu --batches 8,16,32 --raw-steps 64 --matmul-rows 16,0
 * --dtype bfloat16|float16|int8|int4 [--group-size 64] [--zero-points] holds a --config model's
 * matrices compact (random values packed on the host); the report gives the bytes the weights
 * take and the GPU memory tfjs holds after the runs (numBytesInGPU: live tensors, the weights).
 * With --fused both, `fusedVsTfjsRelError` compares the two paths' logits over --check-steps (4).
 *
 * Prefill (the fused prefill engine, src/engines/webgpu_prefill, against tfjs ops):
 *   npx tsx bench/generate.ts --config 2b --backend webgpu --fused-prefill both --prefill-lens 128,2048,8192 --out p.json
 * --fused-prefill on|off|both, --prefill-lens (default 128,2048,8192), --batch, --reps (default 3:
 * the median is reported), --prefill-chunk (the engine's steps per chunk; default: the whole
 * prompt up to 4096), --first-token-len (default 512: the first token through model.stream,
 * greedy, prefill included). With the engine, one profiled chunk per length (GPU timestamps per
 * dispatch, summed per kernel kind); with both, `fusedVsTfjsRelError` compares the logits after
 * a 64-step prompt. Each length's `prefillCalls` counts one warm prefill's GPU calls (submits,
 * buffer writes, reads, pipelines, bind groups; src/util/host_trace.ts), and the first token's
 * run its host phases up to the first id (`firstTokenTrace`: median ms per phase, as
 * GRIFFIN_TRACE=1 prints them) and GPU calls.
 */

import {useBackend} from '../src/backend';
import {
  benchModel,
  emit,
  fusedVsTfjs,
  intArg,
  intList,
  modelShape,
  parseArgs,
  randomIds,
  relativeError,
  syncOn,
} from '../src/bench/common';
import {
  DispatchTiming,
  disposeFusedDecoders,
  fusedDecodeConfig,
  fusedDecoderFor,
  fusedTuning,
} from '../src/engines/webgpu_decode';
import {webgpuBackend} from '../src/engines/webgpu_decode/tfjs_webgpu';
import {decodeMatmulConfig, decodeMatmulRows} from '../src/engines/webgpu_decode/tuning';
import {fusedPrefillConfig, fusedPrefillFor} from '../src/engines/webgpu_prefill';
import {parseMatmulTuning} from '../src/engines/webgpu_prefill/shaders/matmul';
import {gpuSamplingConfig} from '../src/generation/gpu_sampling';
import {type SamplingOptions, validateSamplingOptions} from '../src/generation/sampling';
import {queuedDecodeConfig, stepQueueStats} from '../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';
import {
  countGpuCalls,
  countTfReads,
  type GpuCallCounts,
  gpuCalls,
  gpuCallsSince,
  type HostTraceSummary,
  hostTraceConfig,
} from '../src/util/host_trace';

const int = intArg;

const rss = () => process.memoryUsage().rss / 2 ** 20;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const backend = await useBackend(args.backend);
  // '2b-shaped': this script's old name for 2b. The engine runs take randomizeWeights (fast for 2.7B parameters).
  const {model, name} = await benchModel(args, {
    config: args.config === '2b-shaped' ? '2b' : undefined,
    tfjsInit: args.fused == null && args.batches == null && args['fused-prefill'] == null,
  });
  if (args['fused-prefill'] != null || args['prefill-lens'] != null) {
    await benchPrefill(model, name, backend, args);
    model.dispose();
    return;
  }
  if (args.fused != null || args.batches != null) {
    await compareFused(model, name, backend, args);
    model.dispose();
    return;
  }
  const c = model.config;
  const batch = Math.max(1, int(args, 'batch', 1));
  const promptLen = Math.max(1, int(args, 'prompt-len', 128));
  const newTokens = int(args, 'new-tokens', 64);
  const longRun = int(args, 'long', 0);
  const every = Math.max(1, int(args, 'every', 1000));
  const rand = (n: number) => Array.from({length: n}, (_, i) => 3 + ((i * 7919 + 17) % (c.vocab_size - 3)));
  const prompt = Array.from({length: batch}, () => rand(promptLen));

  // Warm-up: the first calls compile kernels and allocate.
  const warm = model.prefill(prompt.map((r) => r.slice(0, Math.min(16, promptLen))));
  for (let i = 0; i < 3; i++) model.decodeStep(warm, Array(batch).fill(5)).logits.dispose();
  warm.dispose();

  const report: Record<string, unknown> = {
    model: name,
    backend,
    batch,
    ...modelShape(model),
  };

  let t0 = performance.now();
  const state = model.prefill(prompt);
  await state.logits.data();
  const prefillMs = performance.now() - t0;
  Object.assign(report, {
    promptTokens: promptLen * batch,
    prefillMs: +prefillMs.toFixed(1),
    prefillTokensPerSec: +(((promptLen * batch) / prefillMs) * 1000).toFixed(1),
    stateBytes: state.byteSize,
  });

  if (longRun === 0) {
    // Decode through the public generation path (sampling included), rows never stopping.
    t0 = performance.now();
    let n = 0;
    for await (const _ of model.stream(
      prompt.map(() => []),
      {state, maxNewTokens: newTokens, temperature: 0.8, seed: 1, eosTokenId: []},
    ))
      n++;
    const ms = performance.now() - t0;
    Object.assign(report, {
      decodeTokens: n,
      decodeMs: +ms.toFixed(1),
      decodeTokensPerSec: +((n / ms) * 1000).toFixed(1),
      msPerStep: +(ms / (n / batch)).toFixed(3),
    });
  } else {
    const samples: Record<string, number>[] = [];
    let n = 0,
      last = performance.now();
    for await (const ev of model.stream(
      prompt.map(() => []),
      {state, maxNewTokens: longRun, temperature: 0.8, seed: 1, eosTokenId: []},
    )) {
      if (ev.row !== batch - 1) continue;
      n++;
      if (n % every === 0) {
        const now = performance.now();
        samples.push({
          tokens: n,
          msPerToken: +((now - last) / every).toFixed(3),
          rssMB: +rss().toFixed(1),
          numTensors: tf.memory().numTensors,
          backendMB: +(tf.memory().numBytes / 2 ** 20).toFixed(2),
        });
        process.stderr.write(`${JSON.stringify(samples[samples.length - 1])}\n`);
        last = now;
      }
    }
    const first = samples[0],
      end = samples[samples.length - 1];
    Object.assign(report, {
      longRunTokens: n,
      every,
      samples,
      // The first sample still includes warm-up allocations (JIT, pools): growth is measured from it.
      rssMBFirstLast: first && end ? [first.rssMB, end.rssMB] : null,
      msPerTokenFirstLast: first && end ? [first.msPerToken, end.msPerToken] : null,
      numTensorsFirstLast: first && end ? [first.numTensors, end.numTensors] : null,
    });
  }
  state.dispose();
  model.dispose();
  console.log(JSON.stringify(report, null, 2));
}

/** Decode tok/s per batch size, with and without the fused engine. */
async function compareFused(
  model: RecurrentGemmaForCausalLM,
  name: string,
  backend: string,
  args: Record<string, string>,
): Promise<void> {
  const c = model.config;
  const batches = intList(args.batches, [Math.max(1, int(args, 'batch', 1))], 'batches');
  const modes =
    args.fused === 'both' ? [true, false] : args.fused === 'off' ? [false] : args.fused === 'on' ? [true] : [null];
  const promptLen = Math.max(1, int(args, 'prompt-len', 128));
  const newTokens = Math.max(1, int(args, 'new-tokens', 64));
  const rawSteps = Math.max(1, int(args, 'raw-steps', newTokens));
  const samplings = (args.sampling ?? 'greedy,0.8').split(',').map(parseSampling);
  const gpuModes = args['gpu-sampling'] === 'both' ? [true, false] : args['gpu-sampling'] === 'off' ? [false] : [null];
  if (args.queued != null && !['on', 'off', 'both'].includes(args.queued))
    throw new Error(`--queued must be on, off or both, got ${JSON.stringify(args.queued)}`);
  const queuedModes =
    args.queued === 'both' ? [true, false] : args.queued === 'off' ? [false] : args.queued === 'on' ? [true] : [null];
  // --queue-depth 1,2: picks in flight through the queue (queuedDecodeConfig.depth; default: GRIFFIN_QUEUE_DEPTH).
  // --repeat N: each measured stream N times in a row (keys _rep2.. for the later ones: the order's effect).
  const repeat = int(args, 'repeat', 1);
  if (repeat < 1 || repeat > 10) throw new Error(`--repeat must be in [1, 10], got ${repeat}`);
  // --trace-runs: each measured stream's host phases summed over the whole run (GRIFFIN_TRACE=run).
  const traceRuns = args['trace-runs'] === 'true';
  const depths: (number | null)[] =
    args['queue-depth'] != null ? intList(args['queue-depth'], [], 'queue-depth') : [null];
  if (depths.some((d) => d != null && d > 2))
    throw new Error(`--queue-depth must be 1 or 2 (or both: 1,2), got ${args['queue-depth']}`);
  const runs: Record<string, unknown>[] = [];
  const sweep = args.sweep != null ? args.sweep.split(',').map((x) => x.split('x').map(Number)) : [null];
  const matmulRows =
    args['matmul-rows'] != null
      ? args['matmul-rows'].split(',').map((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 0 || n > 1024)
            throw new Error(
              `--matmul-rows must be integers in [0, 1024] separated by commas, got ${args['matmul-rows']}`,
            );
          return n;
        })
      : [null];
  const mmSweep = args['mm-sweep'] != null ? args['mm-sweep'].split('/') : [];
  for (const m of mmSweep) parseMatmulTuning(m); // a bad knob: refused before any run
  const measure = async (batch: number, fused: boolean | null, tuning: number[] | null, mm: string | null = null) => {
    const prompt = randomIds(batch, promptLen, c.vocab_size, 1);
    fusedDecodeConfig.enabled = fused;
    // Warm-up: compiles the kernels (tfjs's or the engine's) for this batch size.
    const warm = model.prefill(prompt.map((r) => r.slice(0, Math.min(16, promptLen))));
    for (let i = 0; i < 3; i++) model.decodeStep(warm, Array(batch).fill(5)).logits.dispose();
    await warm.logits.data();
    warm.dispose();
    const engine = backend === 'webgpu' ? fusedDecoderFor(model, batch) : null;
    const run: Record<string, unknown> = {
      batch,
      fused: engine != null,
      dispatchesPerStep: engine?.dispatchCount ?? null,
      matmul: engine?.dispatchNames.some((n) => n.includes('@mm')) ?? false,
      matmulRows: decodeMatmulRows(),
    };
    if (mm != null) run.mm = mm;
    if (tuning != null)
      run.tuning = {
        threads: tuning[0],
        maxRows: tuning[1],
        unroll: tuning[2],
        words: tuning[3],
        lruChannels: tuning[4],
        reduce: tuning[5] ?? 0,
        xload: tuning[6] ?? 0,
        unpack: tuning[7] ?? 0,
        combine: tuning[8] ?? 0,
        rope: tuning[9] ?? 0,
        lruSlices: tuning[10] ?? 0,
        lruRows: tuning[11] ?? 0,
        lruUnroll: tuning[12] ?? 0,
      };
    let t0: number;
    if (tuning == null && mm == null) {
      // Through the public generation path, as a user runs it: prefill of the prompt, then a token
      // sampled every step (greedy: the argmax taken on the GPU where it can be; other options: the
      // GPU sampler, or with --gpu-sampling off the logits read back and sampled on the host). The
      // first token's time includes the prefill.
      for (const [key, sampling] of samplings)
        for (const gpu of sampling.temperature === 0 ? [null] : gpuModes)
          for (const queued of queuedModes)
            for (const depth of queued === false ? [null] : depths)
              for (let rep = 1; rep <= repeat; rep++) {
                gpuSamplingConfig.enabled = gpu;
                queuedDecodeConfig.enabled = queued;
                queuedDecodeConfig.depth = depth;
                for await (const _ of model.stream(
                  prompt.map((r) => r.slice(0, 8)),
                  {...sampling, maxNewTokens: 3, seed: 1, eosTokenId: []},
                )) {
                  /* warm-up */
                }
                const stamps: number[] = [];
                let n = 0;
                const queued0 = stepQueueStats.queuedSteps,
                  inPlan0 = stepQueueStats.inPlanPicks,
                  ahead0 = stepQueueStats.ahead;
                const traced: HostTraceSummary[] = [];
                if (traceRuns) {
                  hostTraceConfig.enabled = true;
                  hostTraceConfig.wholeRun = true;
                  hostTraceConfig.onTrace = (t) => traced.push(t);
                }
                t0 = performance.now();
                for await (const _ of model.stream(prompt, {
                  ...sampling,
                  maxNewTokens: newTokens,
                  seed: 1,
                  eosTokenId: [],
                })) {
                  if (++n % batch === 0) stamps.push(performance.now()); // a step's rows arrive together
                }
                gpuSamplingConfig.enabled = null;
                queuedDecodeConfig.enabled = null;
                queuedDecodeConfig.depth = null;
                if (traceRuns) {
                  hostTraceConfig.enabled = null;
                  hostTraceConfig.wholeRun = null;
                  hostTraceConfig.onTrace = null;
                }
                const steps = stamps.length,
                  decodeMs = stamps[steps - 1] - stamps[0];
                run[
                  `${key}${gpu === false ? '_host' : ''}${queued === false ? '_unqueued' : ''}${depth != null ? `_depth${depth}` : ''}${rep > 1 ? `_rep${rep}` : ''}`
                ] = {
                  firstTokenMs: +(stamps[0] - t0).toFixed(1),
                  steps,
                  queuedSteps: stepQueueStats.queuedSteps - queued0,
                  inPlanPicks: stepQueueStats.inPlanPicks - inPlan0,
                  aheadPicks: stepQueueStats.ahead - ahead0,
                  msPerStep: steps > 1 ? +(decodeMs / (steps - 1)).toFixed(3) : null,
                  decodeTokensPerSec: steps > 1 ? +((((steps - 1) * batch) / decodeMs) * 1000).toFixed(1) : null,
                  ...(traced.length > 0 ? {hostPhasesMs: roundPhases(traced[traced.length - 1].phases)} : {}),
                };
              }
    }
    t0 = performance.now();
    const state = model.prefill(prompt);
    await state.logits.data();
    run.prefillMs = +(performance.now() - t0).toFixed(1);
    // Bare steps, queued back to back and waited on once.
    const ids = Array.from({length: batch}, (_, r) => 3 + r);
    t0 = performance.now();
    let last: tf.Tensor | null = null;
    for (let i = 0; i < rawSteps; i++) {
      last?.dispose();
      last = model.decodeStep(state, ids).logits;
    }
    await syncOn(last!);
    last!.dispose();
    const ms = performance.now() - t0;
    Object.assign(run, {
      rawSteps,
      rawMsPerStep: +(ms / rawSteps).toFixed(3),
      rawTokensPerSec: +(((rawSteps * batch) / ms) * 1000).toFixed(1),
      // Every step reads all the weights once: the memory bandwidth that pace amounts to.
      weightGBps: +(model.weightBytes() / 1e6 / (ms / rawSteps)).toFixed(1),
    });
    if (engine != null) {
      const {logits, timings} = await engine.profileStep(ids, state.positions);
      logits.dispose();
      if (timings != null) run.profile = summarize(timings);
    }
    state.dispose();
    process.stderr.write(`${JSON.stringify(run)}\n`);
    runs.push(run);
  };
  // The engine's logits against tfjs ops' on this device, a few steps from a short prompt.
  const check = async (batch: number, steps: number) => {
    const prompt = randomIds(batch, 8, c.vocab_size, 2);
    const logits = async (fused: boolean) => {
      fusedDecodeConfig.enabled = fused;
      const state = model.prefill(prompt);
      const out: Float32Array[] = [];
      for (let i = 0; i < steps; i++) {
        const {logits: l} = model.decodeStep(
          state,
          Array.from({length: batch}, (_, r) => 3 + ((i * 7 + r) % 100)),
        );
        out.push(Float32Array.from((await l.data()) as Float32Array));
        l.dispose();
      }
      state.dispose();
      return out;
    };
    const a = await logits(true),
      b = await logits(false);
    return +a.reduce((worst, x, i) => Math.max(worst, relativeError(x, b[i])), 0).toExponential(2);
  };
  const checks: Record<string, number> = {};
  for (const rows of matmulRows) {
    if (rows != null) {
      decodeMatmulConfig.rows = rows === 0 ? -1 : rows;
      disposeFusedDecoders(model);
    }
    for (const batch of batches) {
      for (const fused of modes) await measure(batch, fused, null);
      if (args.fused === 'both' && backend === 'webgpu') {
        const key = `batch${batch}${rows != null ? `_matmulRows${rows}` : ''}`;
        checks[key] = await check(batch, Math.max(1, int(args, 'check-steps', 4)));
        process.stderr.write(`fused vs tfjs logits, ${key}: worst relative difference ${checks[key]}\n`);
      }
    }
  }
  decodeMatmulConfig.rows = 0;
  if (mmSweep.length > 0) {
    const old = process.env.GRIFFIN_DECODE_MM;
    for (const m of mmSweep) {
      process.env.GRIFFIN_DECODE_MM = m;
      disposeFusedDecoders(model);
      for (const batch of batches) await measure(batch, true, null, m);
    }
    if (old == null) delete process.env.GRIFFIN_DECODE_MM;
    else process.env.GRIFFIN_DECODE_MM = old;
    disposeFusedDecoders(model);
  }
  if (args.sweep != null) {
    for (const t of sweep) {
      fusedTuning.threads = t![0];
      fusedTuning.maxRows = t![1];
      fusedTuning.unroll = t![2] ?? 0;
      fusedTuning.words = t![3] ?? 0;
      fusedTuning.lruChannels = t![4] ?? 0;
      fusedTuning.reduce = t![5] ?? 0;
      fusedTuning.xload = t![6] ?? 0;
      fusedTuning.unpack = t![7] ?? 0;
      fusedTuning.combine = t![8] ?? 0;
      fusedTuning.rope = t![9] ?? 0;
      fusedTuning.lruSlices = t![10] ?? 0;
      fusedTuning.lruRows = t![11] ?? 0;
      fusedTuning.lruUnroll = t![12] ?? 0;
      disposeFusedDecoders(model);
      for (const batch of batches) await measure(batch, true, t);
    }
    fusedTuning.threads = 0;
    fusedTuning.maxRows = 0;
    fusedTuning.unroll = 0;
    fusedTuning.words = 0;
    fusedTuning.lruChannels = 0;
    fusedTuning.reduce = 0;
    fusedTuning.xload = 0;
    fusedTuning.unpack = 0;
    fusedTuning.combine = 0;
    fusedTuning.rope = 0;
    fusedTuning.lruSlices = 0;
    fusedTuning.lruRows = 0;
    fusedTuning.lruUnroll = 0;
  }
  fusedDecodeConfig.enabled = null;
  const weightBytes = model.weightBytes();
  const mem = tf.memory() as {numBytes: number; numBytesInGPU?: number; numBytesAllocatedInGPU?: number};
  emit(
    {
      model: name,
      backend,
      ...modelShape(model),
      weightDtype: model.weightDtype,
      weightGB: +(weightBytes / 1e9).toFixed(2),
      weightMB: +(weightBytes / 1e6).toFixed(1),
      tfjsGpuMBAfterRuns: mem.numBytesInGPU != null ? +(mem.numBytesInGPU / 1e6).toFixed(1) : null,
      tfjsGpuMBAllocated: mem.numBytesAllocatedInGPU != null ? +(mem.numBytesAllocatedInGPU / 1e6).toFixed(1) : null,
      promptLen,
      newTokens,
      runs,
      fusedVsTfjsRelError: checks,
    },
    args.out,
  );
}

/** Prefill ms per prompt length and first-token ms through generate, with and without the fused prefill engine. */
async function benchPrefill(
  model: RecurrentGemmaForCausalLM,
  name: string,
  backend: string,
  args: Record<string, string>,
): Promise<void> {
  const c = model.config;
  const batch = Math.max(1, int(args, 'batch', 1));
  const lens = intList(args['prefill-lens'], [128, 2048, 8192], 'prefill-lens');
  const reps = Math.max(1, int(args, 'reps', 3));
  const firstLen = Math.max(1, int(args, 'first-token-len', 512));
  const chunkSize = args['prefill-chunk'] != null ? Math.max(1, int(args, 'prefill-chunk', 4096)) : undefined;
  const mode = args['fused-prefill'] ?? 'both';
  if (!['on', 'off', 'both'].includes(mode)) throw new Error(`--fused-prefill must be on, off or both, got ${mode}`);
  const modes = mode === 'both' ? [true, false] : [mode === 'on'];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const runs: Record<string, unknown>[] = [];
  for (const fused of modes) {
    fusedPrefillConfig.enabled = fused;
    for (const len of lens) {
      const prompt = randomIds(batch, len, c.vocab_size, 3);
      const once = async () => {
        const t0 = performance.now();
        const state = model.prefill(prompt, {chunkSize: fused ? chunkSize : undefined});
        await state.logits.data();
        const ms = performance.now() - t0;
        state.dispose();
        return ms;
      };
      const warmMs = await once(); // compiles, allocates
      const times: number[] = [];
      for (let i = 0; i < reps; i++) times.push(await once());
      let prefillCalls: GpuCallCounts | null = null;
      if (backend === 'webgpu') {
        countGpuCalls(webgpuBackend().device);
        countTfReads(webgpuBackend());
        const c0 = {...gpuCalls};
        model.prefill(prompt, {chunkSize: fused ? chunkSize : undefined}).dispose();
        prefillCalls = gpuCallsSince(c0);
      }
      const run: Record<string, unknown> = {
        fusedPrefill: fused,
        batch,
        promptLen: len,
        warmupMs: +warmMs.toFixed(1),
        prefillMs: +median(times).toFixed(1),
        prefillMsAll: times.map((x) => +x.toFixed(1)),
        prefillTokensPerSec: +(((len * batch) / median(times)) * 1000).toFixed(1),
        prefillCalls,
      };
      const engine = fused && backend === 'webgpu' ? fusedPrefillFor(model, batch, chunkSize ?? len) : null;
      if (engine != null) {
        run.dispatchesPerChunk = engine.dispatchCount;
        run.chunk = Math.min(chunkSize ?? len, engine.capacity);
        // One chunk from position 0 (a fresh document: whatever state the engine holds is reset).
        const t = run.chunk as number;
        const {logits, timings} = await engine.profileChunk(
          prompt.map((r) => r.slice(0, t)),
          prompt.map(() => Array.from({length: t}, (_, j) => j)),
        );
        logits.dispose();
        if (timings != null) run.profile = summarize(timings);
      }
      process.stderr.write(`${JSON.stringify(run)}\n`);
      runs.push(run);
    }
    // The first token through the public path (greedy), prefill included.
    const prompt = randomIds(batch, firstLen, c.vocab_size, 4);
    const first = async () => {
      const t0 = performance.now();
      let ms = 0;
      for await (const _ of model.stream(prompt, {temperature: 0, maxNewTokens: 2, eosTokenId: []})) {
        if (ms === 0) ms = performance.now() - t0;
      }
      return ms;
    };
    await first();
    const times: number[] = [];
    const traces: HostTraceSummary[] = [];
    if (backend === 'webgpu') countGpuCalls(webgpuBackend().device);
    hostTraceConfig.enabled = true;
    hostTraceConfig.onTrace = (t) => traces.push(t);
    try {
      for (let i = 0; i < reps; i++) times.push(await first());
    } finally {
      hostTraceConfig.enabled = null;
      hostTraceConfig.onTrace = null;
    }
    const phases = Object.fromEntries(
      Object.keys(traces[0]?.phases ?? {}).map((k) => [k, +median(traces.map((t) => t.phases[k] ?? 0)).toFixed(2)]),
    );
    const run = {
      fusedPrefill: fused,
      batch,
      firstTokenPromptLen: firstLen,
      firstTokenMs: +median(times).toFixed(1),
      firstTokenTrace: phases,
      firstTokenCalls: traces[0]?.calls ?? null,
    };
    process.stderr.write(`${JSON.stringify(run)}\n`);
    runs.push(run);
  }
  let check: number | null = null;
  if (modes.length === 2 && backend === 'webgpu') {
    check = await fusedVsTfjs(batch, c.vocab_size, (prompt, fused) => {
      fusedPrefillConfig.enabled = fused;
      return model.prefill(prompt);
    });
  }
  fusedPrefillConfig.enabled = null;
  emit(
    {
      model: name,
      backend,
      ...modelShape(model),
      weightDtype: model.weightDtype,
      runs,
      fusedVsTfjsRelError: check,
    },
    args.out,
  );
}

/** One --sampling entry: greedy, or T[/kK][/pP][/mM][/rR]; its report key ('greedy', 't0.8/p0.95'). */
/** A trace's phases (ms, summed over the run) rounded to 0.01. */
function roundPhases(phases: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +v.toFixed(2)]));
}

function parseSampling(entry: string): [string, SamplingOptions] {
  if (entry === 'greedy') return ['greedy', {temperature: 0}];
  const [t, ...rest] = entry.split('/');
  const o: SamplingOptions = {temperature: Number(t)};
  const names: Record<string, keyof SamplingOptions> = {k: 'topK', p: 'topP', m: 'minP', r: 'repetitionPenalty'};
  for (const part of rest) {
    const name = names[part[0]];
    if (name == null) throw new Error(`--sampling: unknown part ${JSON.stringify(part)} in ${entry} (k, p, m, r)`);
    o[name] = Number(part.slice(1));
  }
  try {
    validateSamplingOptions(o);
  } catch (e) {
    throw new Error(`--sampling ${entry}: ${(e as Error).message}`);
  }
  if (!(o.temperature! > 0))
    throw new Error(`--sampling takes greedy or T > 0 with options, e.g. 0.8/p0.95; got ${entry}`);
  return [`t${entry}`, o];
}

/** Per kernel kind (the part of the dispatch name after the layer): GPU ms and GB/s of what it must read. */
function summarize(timings: DispatchTiming[]) {
  const kinds = new Map<string, {count: number; ms: number; bytes: number}>();
  for (const t of timings) {
    const kind = t.name.split('.').pop()!;
    const k = kinds.get(kind) ?? {count: 0, ms: 0, bytes: 0};
    k.count++;
    k.ms += t.ms;
    k.bytes += t.bytes;
    kinds.set(kind, k);
  }
  const total = timings.reduce((a, t) => a + t.ms, 0),
    bytes = timings.reduce((a, t) => a + t.bytes, 0);
  return {
    gpuMs: +total.toFixed(3),
    GB: +(bytes / 1e9).toFixed(3),
    GBps: +(bytes / 1e6 / total).toFixed(1),
    byKind: Object.fromEntries(
      [...kinds]
        .sort((a, b) => b[1].ms - a[1].ms)
        .map(([name, k]) => [
          name,
          {count: k.count, ms: +k.ms.toFixed(3), GBps: k.bytes > 0 ? +(k.bytes / 1e6 / k.ms).toFixed(1) : null},
        ]),
    ),
  };
}

main().catch((e) => {
  console.error(`bench/generate: ${(e as Error).message}`);
  process.exitCode = 1;
});
