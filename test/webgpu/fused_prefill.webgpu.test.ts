/**
 * The fused WebGPU prefill engine (src/engines/webgpu_prefill): its own kernels (embedding
 * gather, conv1d over a chunk with the ring as history, the RG-LRU scan with the ring and h
 * update) against the project's tfjs ops on the cpu backend on random inputs.
 *
 * Tolerances: float32 on both sides, the same operations in the same order per value: measured
 * ~1e-7 relative on SwiftShader; the bound is 1e-5 (relative, ||a - b|| / ||b||).
 */

import {vocabSplit} from '../../layers/vocab_split';
import type {CompactSpec} from '../../ops/compact/format';
import {causalConv1d} from '../../ops/conv1d';
import {blockDiagonal, rgLru} from '../../ops/rg_lru';
import {disposeSequenceInfo, sequenceInfo} from '../../ops/sequence';
import type {RecurrentGemmaConfigArgs} from '../../src/config';
import {fusedDecodeConfig, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {fusedPrefillConfig, fusedPrefillFor} from '../../src/engines/webgpu_prefill';
import {prefillConvGrid, prefillConvSource} from '../../src/engines/webgpu_prefill/shaders/conv';
import {DIMS, DIMS_WORDS} from '../../src/engines/webgpu_prefill/shaders/dims';
import {prefillEmbedGrid, prefillEmbedSource} from '../../src/engines/webgpu_prefill/shaders/embed';
import {prefillScanGrid, prefillScanSource} from '../../src/engines/webgpu_prefill/shaders/scan';
import {
  scanChunkedGrid,
  scanFinishSource,
  scanPartSource,
  scanScratchFloats,
} from '../../src/engines/webgpu_prefill/shaders/scan_chunked';
import type {GenerationState} from '../../src/generation/state';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {onCpu, runKernel, uniform} from './kernel_helpers';
import {randomModel, SMALL_CFG} from './random_model';
import {stateArrays, worstOf} from './state_compare';

const KERNEL_TOL = 1e-5;
/** Relative error allowed between the engine's prefill (logits, state) and the cpu backend's. */
const PREFILL_TOL = 1e-5;
/** Against HF's float64 logits (the tfjs paths' own parity bound, test/model/parity.test.ts). */
const GOLDEN_TOL = 1e-4;

function dimsWords(M: number, t: number, head: number, conv: number): Uint32Array {
  const d = new Uint32Array(DIMS_WORDS);
  d[DIMS.M] = M;
  d[DIMS.T] = t;
  d[DIMS.HEAD] = head;
  d[DIMS.CONV] = conv;
  return d;
}

interface PrefillScenario {
  cfg: RecurrentGemmaConfigArgs;
  compact?: CompactSpec;
  /** vocabSplit.maxPieceBytes (0: one piece). */
  pieceBytes: number;
  prompts: number[][];
  chunkSize: number;
  /** A second prompt prefilled onto the state (a chat turn), its chunk size. */
  more: number[][];
  moreChunk: number;
}

/**
 * On the current backend: prefill (state and logits read back), 3 decode steps, a second prompt
 * onto the state, 2 decode steps; logits after each, and the state after each prefill.
 */
async function scenarioRun(sc: PrefillScenario, seed: number) {
  const model = randomModel(sc.cfg, seed, sc.compact);
  const b = sc.prompts.length,
    V = sc.cfg.vocab_size!;
  const logits: Float32Array[] = [];
  const states: Float32Array[][] = [];
  let fused = 0;
  const eng = () => (tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, b) : null);
  const prefill = async (ids: number[][], state: GenerationState | null, chunkSize: number) => {
    const s = model.prefill(ids, {state, chunkSize});
    if (eng()?.owner === (s as unknown)) fused++;
    logits.push(Float32Array.from((await s.logits.data()) as Float32Array));
    // The state read back (exported), then decoding goes on from the exported tensors.
    states.push(await stateArrays(s));
    return s;
  };
  const step = async (s: GenerationState, i: number) => {
    const {logits: l} = model.decodeStep(
      s,
      Array.from({length: b}, (_, r) => (i * 31 + r * 17 + seed) % V),
    );
    logits.push(Float32Array.from((await l.data()) as Float32Array));
    l.dispose();
  };
  const state = await prefill(sc.prompts, null, sc.chunkSize);
  for (let i = 0; i < 3; i++) await step(state, i);
  await prefill(sc.more, state, sc.moreChunk);
  for (let i = 0; i < 2; i++) await step(state, 10 + i);
  state.dispose();
  model.dispose();
  return {logits, states, fused};
}

async function compareScenario(sc: PrefillScenario, seed: number): Promise<{logits: number; state: number}> {
  vocabSplit.maxPieceBytes = sc.pieceBytes;
  try {
    await tf.setBackend('cpu');
    const cpu = await scenarioRun(sc, seed);
    await tf.setBackend('webgpu');
    const before = tf.memory().numTensors;
    const gpu = await scenarioRun(sc, seed);
    expect(tf.memory().numTensors).toBe(before);
    expect(gpu.fused).toBe(2); // both prefills ran on the engine
    const states = gpu.states.map((st, i) => worstOf(st, cpu.states[i]));
    return {logits: worstOf(gpu.logits, cpu.logits), state: Math.max(...states)};
  } finally {
    vocabSplit.maxPieceBytes = 0;
  }
}

describeWebGPU('fused WebGPU prefill engine', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    // tfjs's prefill on SwiftShader: the packed matMul program (see decode.webgpu.test.ts).
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3);
    fusedDecodeConfig.enabled = true; // whatever the env says: these tests are about the engines
    fusedPrefillConfig.enabled = true;
    // Scan chunks of 4 steps: several per prefill chunk here (32 by default).
    fusedPrefillConfig.scanSteps = 4;
  });
  afterAll(() => {
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
    fusedDecodeConfig.enabled = null;
    fusedPrefillConfig.enabled = null;
    fusedPrefillConfig.scanSteps = 32;
  });

  test('embedding gather of a chunk from one piece of the vocabulary matrix, scaled; rows past M untouched', async () => {
    const D = 6,
      start = 10,
      rows = 5,
      M = 3;
    const emb = uniform(50, rows * D);
    const ids = Uint32Array.from([12, 3, 14, 11]); // row 3 lies past M
    const x0 = uniform(51, 4 * D);
    const [, , , x] = await runKernel(
      prefillEmbedSource({D, start, rows, scale: 50.5}),
      [emb, dimsWords(M, M, 0, 0), ids, x0],
      prefillEmbedGrid(D, M, 65535),
    );
    for (let j = 0; j < D; j++) {
      expect(x[0 * D + j]).toBe(Math.fround(emb[2 * D + j] * 50.5));
      expect(x[1 * D + j]).toBe(x0[1 * D + j]); // id 3 lies in another piece
      expect(x[2 * D + j]).toBe(Math.fround(emb[4 * D + j] * 50.5));
      expect(x[3 * D + j]).toBe(x0[3 * D + j]);
    }
  });

  // b rows of t steps; start: each row's first position (0: a document start, fresh history);
  // conv: the ring slot of the chunk's first input.
  test.each([
    ['2 rows, 7 steps, width 4, one row starting a document', 2, 7, 12, 3, 4, [0, 5], 2],
    ['1 row, 2 steps (fewer than the history), width 4, continuing', 1, 2, 8, 2, 4, [9], 1],
    ['2 rows, 2 steps, width 4, a row starting a document with less than the history', 2, 2, 8, 2, 4, [3, 0], 3],
    ['3 rows, 5 steps, width 1 (no history)', 3, 5, 8, 2, 1, [0, 4, 1], 0],
  ] as [string, number, number, number, number, number, number[], number][])(
    'conv1d over a chunk + RG-LRU scan: %s',
    async (_n, b, t, E, H, W, start, conv) => {
      const M = b * t,
        BW = E / H;
      const positions = start.map((p) => Array.from({length: t}, (_, j) => p + j));
      const pos = Uint32Array.from(positions.flat());
      const uy = uniform(60, M * 2 * E, -2, 2);
      const cw = uniform(61, E * W),
        cb = uniform(62, E),
        bx = uniform(63, E),
        ba = uniform(64, E);
      const rp = uniform(65, E, 0.8, 0.999).map((a) => Math.log(Math.exp(-Math.log(a) / 8) - 1));
      const wx = uniform(66, H * BW * BW, -0.5, 0.5),
        wa = uniform(67, H * BW * BW, -0.5, 0.5);
      const ring = uniform(68, b * W * E),
        h0 = uniform(69, b * E);
      // A row at position 0 starts fresh: its history and h are zeros (the state before any token).
      start.forEach((p, r) => {
        if (p === 0) {
          ring.fill(0, r * W * E, (r + 1) * W * E);
          h0.fill(0, r * E, (r + 1) * E);
        }
      });
      const st = Float32Array.from([...ring, ...h0]);
      const dims = dimsWords(M, t, 0, conv);
      // History entry q (oldest first) is ring slot (conv + 1 + q) % W.
      const hist = new Float32Array(b * (W - 1) * E);
      for (let r = 0; r < b; r++) {
        for (let q = 0; q < W - 1; q++) {
          const sl = (conv + 1 + q) % W;
          hist.set(ring.subarray((r * W + sl) * E, (r * W + sl + 1) * E), (r * (W - 1) + q) * E);
        }
      }
      const [, , , , , , cv] = await runKernel(
        prefillConvSource({E, W}),
        [dims, pos, uy, cw, cb, st, new Float32Array(M * E)],
        prefillConvGrid(E, M, 65535),
      );
      const want = await onCpu(() => {
        const all = tf.tensor3d(uy, [b, t, 2 * E]);
        const u = tf.slice(all, [0, 0, 0], [b, t, E]);
        const y = tf.slice(all, [0, 0, E], [b, t, E]);
        const info = sequenceInfo(b, t, {positionIds: positions});
        const c = causalConv1d(u, tf.tensor3d(cw, [E, 1, W]), tf.tensor1d(cb), info, tf.tensor3d(hist, [b, W - 1, E]));
        const p = {
          recurrent_param: tf.tensor1d(rp),
          input_gate_weight: tf.tensor3d(wx, [H, BW, BW]),
          input_gate_bias: tf.tensor2d(bx, [H, BW]),
          recurrent_gate_weight: tf.tensor3d(wa, [H, BW, BW]),
          recurrent_gate_bias: tf.tensor2d(ba, [H, BW]),
        };
        const r = rgLru(c.y, p, info, tf.tensor2d(h0, [b, E]));
        const gx = blockDiagonal(c.y, p.input_gate_weight, p.input_gate_bias);
        const ga = blockDiagonal(c.y, p.recurrent_gate_weight, p.recurrent_gate_bias);
        const out = [c.y, tf.concat([gx, ga], 2), tf.mul(r.y, y), c.state, r.hLast];
        disposeSequenceInfo(info);
        return out;
      });
      expect(relError(cv, want[0])).toBeLessThan(KERNEL_TOL);
      // The scan from the reference's conv outputs and gate pre-activations.
      const got = await runKernel(
        prefillScanSource({E, W}),
        [dims, pos, uy, want[0], want[1], rp, st, new Float32Array(M * E)],
        prefillScanGrid(E, b),
      );
      const [gotSt, o] = [got[6], got[7]];
      expect(relError(o, want[2])).toBeLessThan(KERNEL_TOL);
      expect(relError(gotSt.subarray(b * W * E), want[4])).toBeLessThan(KERNEL_TOL);
      // The chunked scan (chunks of 3 steps: several per row, the last one short).
      const cs = {E, W, L: 3};
      const [, , , , , , sc] = await runKernel(
        scanPartSource(cs),
        [dims, pos, want[0], want[1], rp, st, new Float32Array(scanScratchFloats(cs, b, t))],
        scanChunkedGrid(cs, b, t),
      );
      const chunked = await runKernel(
        scanFinishSource(cs),
        [dims, pos, uy, want[0], want[1], sc, st, new Float32Array(M * E)],
        scanChunkedGrid(cs, b, t),
      );
      expect(relError(chunked[7], want[2])).toBeLessThan(KERNEL_TOL);
      expect(relError(chunked[6].subarray(b * W * E), want[4])).toBeLessThan(KERNEL_TOL);
      expect(Array.from(chunked[6].subarray(0, b * W * E))).toEqual(Array.from(gotSt.subarray(0, b * W * E)));
      // The ring after the chunk, read as the decode engine reads it: the next input goes to
      // slot (conv + t) % W, the history is the W-1 slots after it, oldest first.
      if (W > 1) {
        const next = (conv + t) % W;
        const newHist = new Float32Array(b * (W - 1) * E);
        for (let r = 0; r < b; r++) {
          for (let q = 0; q < W - 1; q++) {
            const sl = (next + 1 + q) % W;
            newHist.set(gotSt.subarray((r * W + sl) * E, (r * W + sl + 1) * E), (r * (W - 1) + q) * E);
          }
        }
        expect(Array.from(newHist)).toEqual(Array.from(want[3]));
      }
    },
  );

  // ---- whole prefills ---------------------------------------------------------------------------

  test(`tiny-a: prefill through the engine (one chunk, chunks of 7) equals the golden (${GOLDEN_TOL}) and cpu (${PREFILL_TOL}), state and decoding after it too`, async () => {
    const {golden, tensor} = loadTinyAGolden();
    const ids = golden.input_ids;
    const [b, t] = [ids.length, ids[0].length];
    const V = 512;
    const G = tensor('logits') as Float32Array;
    const last = new Float32Array(b * V);
    for (let r = 0; r < b; r++) last.set(G.subarray((r * t + t - 1) * V, (r * t + t) * V), r * V);
    const run = async (chunkSize?: number) => {
      const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
      const pre = tf.getBackend() === 'webgpu' ? fusedPrefillFor(model, b, chunkSize ?? t) : null;
      const state = model.prefill(ids, {chunkSize});
      const used = pre != null && fusedDecoderFor(model, b)?.owner === (state as unknown);
      const logits = Float32Array.from((await state.logits.data()) as Float32Array);
      const decoded: Float32Array[] = [];
      for (let i = 0; i < 4; i++) {
        const {logits: l} = model.decodeStep(state, [3 + i, 40 + i]);
        decoded.push(Float32Array.from((await l.data()) as Float32Array));
        l.dispose();
      }
      // The state after prefill: a second prefill of the same prompt, exported (layers read back).
      const again = model.prefill(ids, {chunkSize});
      const arrays = await stateArrays(again);
      again.dispose();
      state.dispose();
      model.dispose();
      return {logits, decoded, arrays, used};
    };
    await tf.setBackend('cpu');
    const cpu = await run();
    await tf.setBackend('webgpu');
    for (const chunk of [undefined, 7]) {
      const gpu = await run(chunk);
      expect(gpu.used).toBe(true);
      const vsGolden = relError(gpu.logits, last);
      const vsCpu = relError(gpu.logits, cpu.logits);
      const state = worstOf(gpu.arrays, cpu.arrays);
      const dec = worstOf(gpu.decoded, cpu.decoded);
      console.log(
        `tiny-a fused prefill (chunk ${chunk ?? t}): vs golden ${vsGolden.toExponential(2)}, vs cpu ${vsCpu.toExponential(2)}, state ${state.toExponential(2)}, decode after ${dec.toExponential(2)}`,
      );
      expect(vsGolden).toBeLessThan(GOLDEN_TOL);
      expect(vsCpu).toBeLessThan(PREFILL_TOL);
      expect(state).toBeLessThan(PREFILL_TOL);
      expect(dec).toBeLessThan(PREFILL_TOL);
    }
  });

  const prompts2 = [
    [2, 5, 9, 11, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56],
    [2, 100, 101, 102, 103, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22],
  ];

  /** A compact random model, batch 2, 2 heads of 2 kv heads, window 6: 15 tokens in chunks of 8, then 3 in chunks of 3. */
  const multiHead = (compact: CompactSpec): PrefillScenario => ({
    cfg: {
      vocab_size: 128,
      hidden_size: 64,
      lru_width: 64,
      intermediate_size: 128,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      num_hidden_layers: 2,
      attention_window_size: 6,
      block_types: ['attention', 'recurrent'],
    },
    compact,
    pieceBytes: 0,
    prompts: prompts2.map((r) => r.slice(0, 15)),
    chunkSize: 8,
    more: [
      [60, 61, 62],
      [70, 71, 72],
    ],
    moreChunk: 3,
  });

  test(`random model, batch 2, 21 steps past the window of 8 in chunks of 13 and 8, vocabulary in 3 pieces, untied head, biases, then a turn of 5 in chunks of 2 (${PREFILL_TOL})`, async () => {
    const worst = await compareScenario(
      {
        cfg: SMALL_CFG,
        pieceBytes: 70 * 32 * 4,
        prompts: prompts2,
        chunkSize: 13,
        more: [
          [60, 61, 62, 63, 64],
          [70, 71, 72, 73, 74],
        ],
        moreChunk: 2,
      },
      7,
    );
    console.log(
      `random model fused prefill vs cpu: logits ${worst.logits.toExponential(2)}, state ${worst.state.toExponential(2)}`,
    );
    expect(worst.logits).toBeLessThan(PREFILL_TOL);
    expect(worst.state).toBeLessThan(PREFILL_TOL);
  });

  test.each([
    ['int4 g32 zero points (GeGLU split in two matmuls)', {dtype: 'int4', groupSize: 32, zeroPoints: true}],
    ['bfloat16', {dtype: 'bfloat16'}],
  ] as [string, CompactSpec][])(
    `random model held %s, batch 2, multi-head attention, window 6 (${PREFILL_TOL})`,
    async (_n, compact) => {
      const worst = await compareScenario(multiHead(compact), 11);
      console.log(
        `${_n}: fused prefill vs cpu: logits ${worst.logits.toExponential(2)}, state ${worst.state.toExponential(2)}`,
      );
      expect(worst.logits).toBeLessThan(PREFILL_TOL);
      expect(worst.state).toBeLessThan(PREFILL_TOL);
    },
  );

  // The matmul variants through the engine (GRIFFIN_PREFILL_MM read per chunk): split-K runs every
  // projection as two dispatches over the plan's shared partial-sum buffer; sg=4 takes x from
  // SwiftShader's subgroups of 4 (dropped by the plan on a device without them).
  test.each([
    ['split-K in 3', 'bm=16,bn=16,bk=8,tm=4,tn=4,splitk=3,spread=1'],
    ['subgroup x fragments, double buffers', 'bm=16,bn=16,bk=8,tm=4,tn=4,sg=4,buffers=2'],
  ])(`random model held bfloat16 through the engine with matmul variant %s (${PREFILL_TOL})`, async (_n, env) => {
    const before = process.env.GRIFFIN_PREFILL_MM;
    process.env.GRIFFIN_PREFILL_MM = env;
    try {
      const worst = await compareScenario(multiHead({dtype: 'bfloat16'}), 13);
      expect(worst.logits).toBeLessThan(PREFILL_TOL);
      expect(worst.state).toBeLessThan(PREFILL_TOL);
    } finally {
      if (before == null) delete process.env.GRIFFIN_PREFILL_MM;
      else process.env.GRIFFIN_PREFILL_MM = before;
    }
  });

  test('generate through the fused prefill reproduces the HF greedy golden exactly', async () => {
    const {golden} = loadTinyAGolden();
    const g = golden.greedy as {prompt: number[][]; sequence: number[][]};
    await tf.setBackend('webgpu');
    const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    const pre = fusedPrefillFor(model, 1, g.prompt[0].length);
    expect(pre).not.toBeNull();
    const before = pre!.decoder.prefillTarget().head;
    const out = await model.generate(g.prompt, {
      maxNewTokens: g.sequence[0].length - g.prompt[0].length,
      temperature: 0,
    });
    // The prompt went through the engine: the ring moved on by the prompt and the decoded tokens.
    const W1 = 65;
    expect(pre!.decoder.prefillTarget().head).toBe((before + g.sequence[0].length - 1) % W1);
    model.dispose();
    expect(out).toEqual(g.sequence);
  });
});
