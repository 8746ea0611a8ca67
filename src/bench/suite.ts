/**
 * The benchmark suite behind `griffin bench` (src/cli/bench.ts) and `npm run bench`: for a named
 * config with random weights (or a checkpoint directory) on one backend, measures load time and
 * peak memory, prefill tokens/s per prompt length, greedy decode tokens/s per batch size,
 * RgLruScan bandwidth, and tokens/s of a full fine-tuning step (loss, gradients, AdamW).
 *   const result = await runSuite({config: 'tiny', backend: 'wasm', ...DEFAULT_SUITE}, (m) => console.error(m));
 *
 * Timing: prefill is timed on the second run of a length up to 512 tokens (median of `reps`),
 * once above (long prompts are expensive; a short warm-up prefill runs first); decode steps run
 * after two warm-up steps, each step reading the argmax back as a caller would; the scan uses
 * the median of `reps` samples (see common.ts timeIt); the training step is the median of
 * `trainSteps` steps after one warm-up step. Next to each wall time, `cpuMs` is this process's
 * CPU time (user + system) for the same work: on a machine shared with other jobs it moves much
 * less than wall time (cpu and wasm here run one thread; GC and I/O threads add a little).
 */

import {packedBytes, weightSpec} from '../../ops/compact/format';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD} from '../../ops/rg_lru_scan';
import {rowArgmax} from '../../ops/row_argmax';
import {wasmMatMulCacheBytes} from '../../ops/wasm_matmul';
import {useBackend} from '../backend';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../model';
import {tf} from '../tf';
import {AdamW} from '../training/optimizer';
import {WASM_MAX_WEIGHT_BYTES} from '../util/limits';
import {
  benchConfig,
  describeMachine,
  Environment,
  MemoryWatch,
  modelShape,
  paramCount,
  peakRssBytes,
  randomIds,
  randomizeWeights,
  scanBytes,
  scanInputs,
  syncOn,
  timeIt,
} from './common';

export const PHASES = ['prefill', 'decode', 'scan', 'train'] as const;
export type Phase = (typeof PHASES)[number];

export interface SuiteOptions {
  /** A named shape with random weights (common.ts CONFIGS), unless `model` is given. */
  config: string;
  /** A checkpoint directory (HF or tfjs layout) instead of random weights. */
  model?: string;
  layers?: number;
  vocab?: number;
  /** cpu, wasm, webgpu, tensorflow; undefined: useBackend's default (the fastest installed). */
  backend?: string;
  /** How the weight matrices are held (fromPretrained's dtype / groupSize); default float32. */
  load?: PretrainedOptions;
  promptLengths: number[];
  /** Decode batch sizes. */
  batches: number[];
  /** Decode steps timed per batch size. */
  newTokens: number;
  /** Prompt length before decoding. */
  decodePrompt: number;
  /** Prefill chunk (the longest piece of a prompt run at once); default: the library's (src/generation/prefill_chunk.ts). */
  chunk?: number;
  reps: number;
  /** Scan: batch and lengths (default: the prompt lengths); width = the config's lru_width. */
  scanBatch: number;
  scanLengths?: number[];
  trainBatch: number;
  trainSeq: number;
  trainSteps: number;
  skip: Phase[];
}

export const DEFAULT_SUITE: Omit<SuiteOptions, 'config'> = {
  promptLengths: [128, 2048, 8192],
  batches: [1, 8],
  newTokens: 32,
  decodePrompt: 128,
  chunk: undefined,
  reps: 3,
  scanBatch: 1,
  trainBatch: 1,
  trainSeq: 128,
  trainSteps: 2,
  skip: [],
};

export interface SuiteResult {
  bench: 'griffin';
  environment: Environment;
  model: Record<string, unknown>;
  options: Omit<SuiteOptions, 'skip'> & {skip: Phase[]};
  load: {ms: number; peakRssMB: number | null; source: string};
  prefill: {b: number; t: number; ms: number; tokPerS: number; cpuMs: number}[];
  decode: {b: number; promptLen: number; steps: number; msPerStep: number; tokPerS: number; cpuMsPerStep: number}[];
  scan: {b: number; t: number; e: number; pass: 'fwd' | 'bwd'; ms: number; GBps: number}[];
  train: {b: number; t: number; ms: number; tokPerS: number; cpuMs: number; loss: number; params: number} | null;
  memory: Record<string, number | string>;
  wasmWeightCopiesMB?: number;
}

const round = (x: number, d = 3) => +x.toFixed(d);
/** This process's CPU time (user + system) since `from`, in ms: steadier than wall time on a shared machine. */
const cpuMsSince = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mb = (x: number) => +(x / 2 ** 20).toFixed(1);

/** Greedy ids as generation picks them: on the GPU where ops/row_argmax has a kernel (4 bytes per row back). */
async function greedy(logits: tf.Tensor): Promise<number[]> {
  const next = rowArgmax(logits) ?? tf.argMax(logits, -1);
  const ids = Array.from(await next.data());
  next.dispose();
  return ids;
}

export async function runSuite(o: SuiteOptions, progress: (msg: string) => void = () => {}): Promise<SuiteResult> {
  const backend = await useBackend(o.backend);
  const environment = await describeMachine(backend);
  const watch = new MemoryWatch().start();
  const skip = new Set(o.skip);

  // Load: a checkpoint, or the named shape with random weights.
  let t0 = performance.now();
  let model: RecurrentGemmaForCausalLM;
  let source: string;
  if (o.model != null) {
    progress(`loading ${o.model} on ${backend}`);
    model = await RecurrentGemmaForCausalLM.fromPretrained(o.model, o.load);
    source = o.model;
  } else {
    const cfg = benchConfig(o.config, {layers: o.layers, vocab: o.vocab});
    const dtype = o.load?.dtype === 'auto' ? 'float32' : (o.load?.dtype ?? 'float32');
    const compact = weightSpec(dtype, {groupSize: o.load?.groupSize});
    const bytes =
      compact == null ? paramCount(cfg) * 4 : packedBytes(compact.dtype, 1, paramCount(cfg), compact.groupSize);
    if (backend === 'wasm' && bytes > WASM_MAX_WEIGHT_BYTES) {
      throw new Error(
        `--config ${o.config} has ${(bytes / 1e9).toFixed(1)} GB of ${dtype} weights, past the wasm backend's 4 GiB heap; ` +
          'use --backend cpu (or tensorflow, webgpu), or shrink it with --layers / --vocab',
      );
    }
    progress(`building ${o.config} with random ${dtype} weights on ${backend}`);
    model = new RecurrentGemmaForCausalLM(cfg, {init: 'zeros', compact});
    let shown = 0;
    randomizeWeights(model, (done, total) => {
      if (done === total || performance.now() - shown > 2000) {
        shown = performance.now();
        progress(`  weights ${done}/${total}`);
      }
    });
    source = `random:${o.config}`;
  }
  await syncOn(model.embed.matrix.pieces[0].variable.read());
  watch.sample();
  const load = {
    ms: round(performance.now() - t0, 1),
    peakRssMB: peakRssBytes() != null ? mb(peakRssBytes()!) : null,
    source,
  };
  const c = model.config;
  const info = {
    source,
    ...modelShape(model),
    float32MB: mb(model.countParams() * 4),
  };
  progress(`  ${info.params} parameters (${info.float32MB} MB float32), loaded in ${load.ms} ms`);

  // wasm: the transposed weight copies ops/wasm_matmul.ts keeps (largest seen; a training step's
  // writes free them until the next forward makes new ones).
  let copies = 0;
  const noteCopies = () => {
    if (backend === 'wasm') copies = Math.max(copies, wasmMatMulCacheBytes());
  };
  const result: SuiteResult = {
    bench: 'griffin',
    environment,
    model: info,
    options: {...o, skip: [...skip]},
    load,
    prefill: [],
    decode: [],
    scan: [],
    train: null,
    memory: {},
  };

  try {
    if (!skip.has('prefill')) {
      const warm = randomIds(1, Math.min(o.chunk ?? 512, Math.min(...o.promptLengths)), c.vocab_size, 1);
      model.prefill(warm, {chunkSize: o.chunk}).dispose();
      for (const t of o.promptLengths) {
        const ids = randomIds(1, t, c.vocab_size, t);
        const times: number[] = [],
          cpu: number[] = [];
        for (let r = 0; r < (t <= 512 ? o.reps : 1); r++) {
          t0 = performance.now();
          const c0 = process.cpuUsage();
          const state = model.prefill(ids, {chunkSize: o.chunk});
          await syncOn(state.logits);
          times.push(performance.now() - t0);
          cpu.push(cpuMsSince(c0));
          state.dispose();
          watch.sample();
        }
        const ms = median(times);
        noteCopies();
        result.prefill.push({b: 1, t, ms: round(ms), tokPerS: round((t / ms) * 1000, 1), cpuMs: round(median(cpu), 1)});
        progress(`  prefill t=${t}: ${round(ms, 1)} ms, ${round((t / ms) * 1000, 1)} tokens/s`);
      }
    }

    if (!skip.has('decode')) {
      for (const b of o.batches) {
        const state = model.prefill(randomIds(b, o.decodePrompt, c.vocab_size, 7 + b), {chunkSize: o.chunk});
        try {
          let ids = await greedy(state.logits);
          for (let i = 0; i < 2; i++) {
            const {logits} = model.decodeStep(state, ids);
            ids = await greedy(logits);
            logits.dispose();
          }
          t0 = performance.now();
          const c0 = process.cpuUsage();
          for (let i = 0; i < o.newTokens; i++) {
            const {logits} = model.decodeStep(state, ids);
            ids = await greedy(logits);
            logits.dispose();
          }
          const ms = (performance.now() - t0) / Math.max(1, o.newTokens);
          const cpuMsPerStep = cpuMsSince(c0) / Math.max(1, o.newTokens);
          watch.sample();
          noteCopies();
          result.decode.push({
            b,
            promptLen: o.decodePrompt,
            steps: o.newTokens,
            msPerStep: round(ms),
            tokPerS: round((b / ms) * 1000, 1),
            cpuMsPerStep: round(cpuMsPerStep),
          });
          progress(`  decode b=${b}: ${round(ms, 2)} ms/step, ${round((b / ms) * 1000, 1)} tokens/s`);
        } finally {
          state.dispose();
        }
      }
    }

    if (!skip.has('scan')) {
      const e = c.lru_width,
        b = o.scanBatch;
      for (const t of o.scanLengths ?? o.promptLengths) {
        const inp = scanInputs(b, t, e);
        const h = tf.engine().runKernel(RG_LRU_SCAN, {a: inp.a, x: inp.x, h0: inp.h0}) as tf.Tensor[];
        for (const pass of ['fwd', 'bwd'] as const) {
          const r =
            pass === 'fwd'
              ? await timeIt(
                  () => tf.engine().runKernel(RG_LRU_SCAN, {a: inp.a, x: inp.x, h0: inp.h0}) as tf.Tensor[],
                  {reps: o.reps, inner: 'auto'},
                )
              : await timeIt(
                  () =>
                    tf.engine().runKernel(RG_LRU_SCAN_GRAD, {
                      a: inp.a,
                      h: h[0],
                      h0: inp.h0,
                      dh: inp.dh,
                      dhLast: inp.dhLast,
                    }) as tf.Tensor[],
                  {reps: o.reps, inner: 'auto'},
                );
          const GBps = +(scanBytes(pass, b, t, e) / r.ms / 1e6).toPrecision(4);
          result.scan.push({b, t, e, pass, ms: r.ms, GBps});
          progress(`  scan ${pass} b=${b} t=${t} e=${e}: ${r.ms} ms, ${GBps} GB/s`);
        }
        watch.sample();
        tf.dispose([...h, ...Object.values(inp)]);
      }
    }

    if (!skip.has('train')) {
      const named = model.namedParameters();
      const params = new Map([...named].map(([n, v]) => [n, v.read() as tf.Variable]));
      const byVar = new Map([...params].map(([n, v]) => [v.name, n]));
      const opt = new AdamW(params);
      const ids = randomIds(o.trainBatch, o.trainSeq, c.vocab_size, 11);
      const step = async (): Promise<number> => {
        const {value, grads} = tf.variableGrads(
          () => model.forward({inputIds: ids, labels: ids}).loss! as tf.Scalar,
          [...params.values()],
        );
        opt.apply(new Map(Object.entries(grads).map(([k, g]) => [byVar.get(k) ?? k, g])), 1e-5);
        const loss = (await value.data())[0];
        tf.dispose([value, ...Object.values(grads)]);
        return loss;
      };
      progress(`  training step b=${o.trainBatch} t=${o.trainSeq} (warm-up)`);
      await step();
      const times: number[] = [],
        cpu: number[] = [];
      let loss = NaN;
      for (let i = 0; i < o.trainSteps; i++) {
        t0 = performance.now();
        const c0 = process.cpuUsage();
        loss = await step();
        times.push(performance.now() - t0);
        cpu.push(cpuMsSince(c0));
        watch.sample();
      }
      opt.dispose();
      const ms = median(times);
      const tokens = o.trainBatch * o.trainSeq;
      result.train = {
        b: o.trainBatch,
        t: o.trainSeq,
        ms: round(ms, 1),
        tokPerS: round((tokens / ms) * 1000, 1),
        cpuMs: round(median(cpu), 1),
        loss: round(loss, 5),
        params: info.params,
      };
      progress(`  train step: ${round(ms, 1)} ms, ${result.train.tokPerS} tokens/s, loss ${round(loss, 4)}`);
    }
  } finally {
    watch.stop();
    result.memory = watch.report();
    noteCopies();
    if (backend === 'wasm') result.wasmWeightCopiesMB = mb(copies);
    model.dispose();
  }
  return result;
}

/** The result as table rows: one per measurement. */
export function tableRows(r: SuiteResult): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  rows.push({what: 'load', ms: r.load.ms, detail: `peak RSS ${r.load.peakRssMB ?? '?'} MB after load`});
  for (const p of r.prefill) rows.push({what: 'prefill', b: p.b, t: p.t, ms: p.ms, 'tok/s': p.tokPerS, cpuMs: p.cpuMs});
  for (const d of r.decode)
    rows.push({
      what: 'decode',
      b: d.b,
      ms: d.msPerStep,
      'tok/s': d.tokPerS,
      cpuMs: d.cpuMsPerStep,
      detail: `ms per step; ${d.steps} steps after a ${d.promptLen}-token prompt`,
    });
  for (const s of r.scan)
    rows.push({what: `scan ${s.pass}`, b: s.b, t: s.t, ms: s.ms, 'GB/s': s.GBps, detail: `e=${s.e}`});
  if (r.train)
    rows.push({
      what: 'train step',
      b: r.train.b,
      t: r.train.t,
      ms: r.train.ms,
      'tok/s': r.train.tokPerS,
      cpuMs: r.train.cpuMs,
      detail: `loss ${r.train.loss}`,
    });
  const m = r.memory;
  rows.push({
    what: 'peak memory',
    detail:
      `RSS ${m.peakRssMB} MB (${m.rssSource}), heap ${m.peakHeapUsedMB} MB, tfjs tensors ${m.peakTfMB} MB` +
      (m.peakTfGpuMB != null ? `, GPU ${m.peakTfGpuMB} MB` : ''),
  });
  return rows;
}

export const TABLE_COLUMNS = ['what', 'b', 't', 'ms', 'tok/s', 'cpuMs', 'GB/s', 'detail'];
