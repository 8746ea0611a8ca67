/**
 * The fused WebGPU decode engine (src/engines/webgpu_decode): each WGSL kernel against the project's
 * tfjs ops on the cpu backend on random inputs, then whole decode steps of the engine against
 * decodeStep on the cpu backend: tiny-a, and random-weight models (batch 1 and 3) with vocabulary
 * pieces, biases, multi-head and multi-query attention, vec4 and scalar GEMV paths, many steps
 * past the attention window, with the state forked (clone), narrowed (select), continued by a
 * prefill (a chat turn) and so handed between the engine and tfjs in between (20 rows: GEMVs, and
 * the weight products as tiled matmuls); and generate's
 * greedy output against HF transformers' (golden.json).
 *
 * Tolerances: float32 on both sides, sums in other orders (tree reductions, split softmax) and
 * the norm's scale applied after the dot product: measured ~1e-6 relative on SwiftShader.
 */

import * as fs from 'fs';
import * as path from 'path';
import {addLora, removeLora} from '../../layers/lora';
import {vocabSplit} from '../../layers/vocab_split';
import {applyRope, attend} from '../../ops/attention';
import {causalConv1d} from '../../ops/conv1d';
import {rgLru} from '../../ops/rg_lru';
import {disposeSequenceInfo, sequenceInfo} from '../../ops/sequence';
import {RecurrentGemmaConfigArgs} from '../../src/config';
import {fusedDecodeConfig, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {
  AttnSpec,
  attnChunks,
  attnCombineGrid,
  attnCombineSource,
  attnPartialSource,
  attnRopePartialSource,
  combineSplit,
  embedSource,
  GemvSpec,
  gemvBindings,
  gemvRows,
  gemvSource,
  rgLruGrid,
  rgLruSource,
  ropeSource,
  stepLayout,
} from '../../src/engines/webgpu_decode/shaders';
import {decodeMatmulConfig} from '../../src/engines/webgpu_decode/tuning';
import {GenerationState} from '../../src/generation/state';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {gemvReference, onCpu, runKernel, uniform} from './kernel_helpers';
import {randomizeWeights, SMALL_CFG} from './random_model';

/** Relative error (||a - b|| / ||b||) allowed per kernel output and per decode step's logits. */
const KERNEL_TOL = 1e-5;
const DECODE_TOL = 1e-5;

// ---- random-weight models -------------------------------------------------------------------

interface Scenario {
  cfg: RecurrentGemmaConfigArgs;
  pieceBytes: number;
  prompts: number[][];
  mask: number[][] | null;
  steps: number; // decode steps before the fork
  forkAt: number;
  selectRows: number[] | null;
}

/**
 * On the current backend: prefill, decode `steps` tokens (forking a clone at forkAt), then the
 * fork 4 tokens, the main state 3 more, and a narrowed copy (select) 3 tokens. Logits per step.
 */
async function scenarioLogits(
  sc: Scenario,
  model: RecurrentGemmaForCausalLM,
  ids: (i: number, b: number) => number[],
): Promise<{logits: Float32Array[]; engineSteps: number}> {
  const out: Float32Array[] = [];
  let engineSteps = 0;
  const step = async (s: GenerationState, tokens: number[]) => {
    const eng = tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, s.batchSize) : null;
    const {logits} = model.decodeStep(s, tokens);
    if (eng != null && eng.owner === (s as unknown)) engineSteps++;
    out.push(Float32Array.from((await logits.data()) as Float32Array));
    logits.dispose();
  };
  const b = sc.prompts.length;
  const state = model.prefill(sc.prompts, {attentionMask: sc.mask});
  let fork: GenerationState | null = null;
  for (let i = 0; i < sc.steps; i++) {
    if (i === sc.forkAt) fork = state.clone();
    await step(state, ids(i, b));
  }
  for (let i = 0; i < 4; i++) await step(fork!, ids(100 + i, b));
  for (let i = 0; i < 3; i++) await step(state, ids(200 + i, b));
  // A chat turn: a prompt prefilled onto the state the engine holds, then decoding again.
  model.prefill(
    Array.from({length: b}, (_, r) => [5 + r, 6, 7]),
    {state},
  );
  out.push(Float32Array.from((await state.logits.data()) as Float32Array));
  for (let i = 0; i < 2; i++) await step(state, ids(250 + i, b));
  if (sc.selectRows) {
    const narrow = state.select(sc.selectRows);
    for (let i = 0; i < 3; i++) await step(narrow, ids(300 + i, sc.selectRows.length));
    narrow.dispose();
  }
  out.push(Float32Array.from((await state.logits.data()) as Float32Array));
  state.dispose();
  fork!.dispose();
  return {logits: out, engineSteps};
}

async function compareScenario(sc: Scenario, seed: number): Promise<number> {
  const V = sc.cfg.vocab_size!;
  const ids = (i: number, b: number) => Array.from({length: b}, (_, r) => (i * 31 + r * 17 + seed) % V);
  vocabSplit.maxPieceBytes = sc.pieceBytes;
  try {
    await tf.setBackend('cpu');
    const cpuModel = new RecurrentGemmaForCausalLM(sc.cfg);
    randomizeWeights(cpuModel, seed);
    const cpu = await scenarioLogits(sc, cpuModel, ids);
    cpuModel.dispose();
    await tf.setBackend('webgpu');
    const gpuModel = new RecurrentGemmaForCausalLM(sc.cfg);
    randomizeWeights(gpuModel, seed);
    const before = tf.memory().numTensors;
    const gpu = await scenarioLogits(sc, gpuModel, ids);
    expect(tf.memory().numTensors).toBe(before);
    gpuModel.dispose();
    const decodeSteps = sc.steps + 4 + 3 + 2 + (sc.selectRows ? 3 : 0);
    expect(gpu.engineSteps).toBe(decodeSteps);
    expect(gpu.logits.length).toBe(cpu.logits.length);
    let worst = 0;
    gpu.logits.forEach((g, i) => {
      worst = Math.max(worst, relError(g, cpu.logits[i]));
    });
    return worst;
  } finally {
    vocabSplit.maxPieceBytes = 0;
  }
}

describeWebGPU('fused WebGPU decode engine', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    // tfjs's prefill on SwiftShader: the packed matMul program (see decode.webgpu.test.ts).
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3);
    fusedDecodeConfig.enabled = true; // whatever GRIFFIN_FUSED_DECODE says: these tests are about the engine
  });
  afterAll(() => {
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
    fusedDecodeConfig.enabled = null;
  });

  // ---- kernels ------------------------------------------------------------------------------

  test.each([
    ['vec4, norm, two segments (second with gelu), 3 rows', 3, 32, [24, 16], 'store', true],
    ['scalar, residual, 2 rows', 2, 30, [10], 'residual', false],
    ['vec4, norm, GeGLU, 1 row', 1, 16, [12, 12], 'geglu', true],
    ['scalar, norm, soft cap into a column offset, 4 rows', 4, 22, [9], 'softcap', true],
    ['vec4, norm, unrolled loop + tail (260 vectors), 2 rows', 2, 1040, [8], 'store', true],
    ['vec4, GeGLU, unrolled loop without tail, 1 row', 1, 512, [4, 4], 'geglu', false],
    ['vec4, norm, GeGLU, 4 strides per trip + tail (300 vectors), 8 rows', 8, 1200, [6, 6], 'geglu', true, 4],
    ['vec4, residual, 4 strides per trip, 6 rows', 6, 512, [10], 'residual', false, 4],
  ] as [string, number, number, number[], GemvSpec['mode'], boolean, number?][])(
    'GEMV %s',
    async (_n, B, IN, segments, mode, norm, U = 2) => {
      const rows = mode === 'geglu' ? segments[0] : segments.reduce((a, b) => a + b, 0);
      const outStride = mode === 'softcap' ? rows + 5 : mode === 'geglu' ? rows : rows;
      const R = rows % 2 === 0 ? 2 : 1;
      const spec: GemvSpec = {
        B,
        IN,
        segments,
        gelu: mode === 'store' && segments.length > 1 ? [false, true] : undefined,
        mode,
        norm,
        eps: 1e-6,
        bias: mode !== 'softcap',
        outStride,
        outOffset: mode === 'softcap' ? 3 : 0,
        cap: 5,
        R,
        T: 32,
        U,
      };
      const x = uniform(1, B * IN, -2, 2),
        g = uniform(2, IN, -0.5, 0.5);
      const ws = segments.map((n, i) => uniform(10 + i, n * IN));
      const bias = uniform(3, mode === 'geglu' ? 2 * rows : rows);
      const out0 = uniform(4, B * outStride);
      const inputs: Record<string, Float32Array> = {x, g, bias, out: out0};
      ws.forEach((w, i) => {
        inputs[`w${i}`] = w;
      });
      const got = await runKernel(
        gemvSource(spec),
        gemvBindings(spec).map((k) => inputs[k]),
        [gemvRows(spec) / R, 1, 1],
      );
      const gotOut = got[got.length - 1];
      const want = await gemvReference(spec, {x, g, ws, bias, out0});
      expect(relError(gotOut, want)).toBeLessThan(KERNEL_TOL);
    },
  );

  /** The RG-LRU kernel's inputs for B rows; rows at position 0 (document starts) where pos says. */
  const lruInputs = (B: number, E: number, H: number, W: number, cs: number, pos: number[]) => {
    const BW = E / H;
    const step = stepLayout(B, 1);
    const uy = uniform(20, B * 2 * E, -2, 2);
    const convW = uniform(21, E * W),
      convB = uniform(22, E),
      bx = uniform(23, E),
      ba = uniform(24, E);
    const rp = uniform(25, E, 0.8, 0.999).map((a) => Math.log(Math.exp(-Math.log(a) / 8) - 1));
    const wx = uniform(26, H * BW * BW, -0.5, 0.5),
      wa = uniform(27, H * BW * BW, -0.5, 0.5);
    const ring = uniform(28, B * W * E),
      h0 = uniform(29, B * E);
    const stepData = new Uint32Array(step.words);
    pos.forEach((p, b) => {
      stepData[step.pos + b] = p;
    });
    stepData[step.slot + 1] = cs;
    const pk = Float32Array.from([...convW, ...convB, ...bx, ...ba, ...rp]);
    const st = Float32Array.from([...ring, ...h0]);
    return {step, uy, convW, convB, bx, ba, rp, wx, wa, ring, h0, stepData, pk, st};
  };
  /** Positions of B rows: every third row (from the second) at a document start. */
  const lruPositions = (B: number) => Array.from({length: B}, (_, b) => (b % 3 === 1 ? 0 : 5 + 3 * b));

  test.each([
    ['3 rows (one at a document start), 2 workgroups per head', 3, 24, 3, 4, 2, 4, 1, 0, 1],
    ['3 rows, 2 workgroups per head, 3 input slices (8 channels: uneven)', 3, 24, 3, 4, 1, 4, 3, 0, 1],
    ['1 row, width 2, one workgroup per head', 1, 64, 2, 2, 1, 32, 1, 0, 1],
    ['1 row, width 2, one workgroup per head, 8 input slices', 1, 64, 2, 2, 0, 32, 8, 0, 1],
    ['2 rows, 40 channels per head in 2 workgroups of 32, 4 input slices', 2, 80, 2, 4, 3, 32, 4, 0, 1],
    ['1 row, 4 slices, unroll 4 (8 trips: 2 unrolled)', 1, 64, 2, 4, 2, 8, 4, 1, 4],
    ['1 row, 4 slices, unroll 3 (8 trips: 2 unrolled, 2 single)', 1, 64, 2, 4, 1, 8, 4, 1, 3],
    ['3 rows in blocks of 2 (the last half empty), 3 slices, unroll 2', 3, 48, 2, 4, 3, 8, 3, 2, 2],
    ['8 rows in blocks of 4, 8 slices, unroll 4', 8, 64, 2, 4, 0, 16, 8, 4, 4],
    ['20 rows in blocks of 8 (the last of 4), 4 slices, unroll 2', 20, 64, 2, 4, 2, 16, 4, 8, 2],
    ['20 rows in blocks of 6, 40 channels in chunks of 16 (uneven), 3 slices, unroll 3', 20, 80, 2, 4, 1, 16, 3, 6, 3],
    ['33 rows in blocks of 8 (the last of 1), 8 slices, unroll 4', 33, 64, 2, 4, 3, 16, 8, 8, 4],
    ['33 rows in one block, 2 slices', 33, 64, 2, 3, 2, 16, 2, 33, 1],
  ] as [string, number, number, number, number, number, number, number, number, number][])(
    'conv1d + RG-LRU step, %s',
    async (_n, B, E, H, W, cs, CC, JS, RB, U) => {
      const BW = E / H;
      const pos = B <= 3 ? [5, 0, 17].slice(0, B) : lruPositions(B);
      const {step, uy, convW, convB, bx, ba, rp, wx, wa, ring, h0, stepData, pk, st} = lruInputs(B, E, H, W, cs, pos);
      // The history, oldest first, is ring slots cs + 1, cs + 2, ... (mod W).
      const hist = new Float32Array(B * (W - 1) * E);
      for (let b = 0; b < B; b++) {
        for (let k = 0; k < W - 1; k++)
          hist.set(
            ring.subarray((b * W + ((cs + 1 + k) % W)) * E, (b * W + ((cs + 1 + k) % W) + 1) * E),
            (b * (W - 1) + k) * E,
          );
      }
      const spec = {B, E, H, W, CC, JS, step, ...(RB ? {RB} : {}), U};
      const got = await runKernel(
        rgLruSource(spec),
        [uy, pk, wx, wa, st, new Float32Array(B * E), stepData],
        rgLruGrid(spec),
      );
      const want = await onCpu(() => {
        const u = tf.slice(tf.tensor3d(uy, [B, 1, 2 * E]), [0, 0, 0], [B, 1, E]);
        const y = tf.slice(tf.tensor3d(uy, [B, 1, 2 * E]), [0, 0, E], [B, 1, E]);
        const info = sequenceInfo(B, 1, {positionIds: pos.map((p) => [p])});
        const conv = causalConv1d(
          u,
          tf.tensor3d(convW, [E, 1, W]),
          tf.tensor1d(convB),
          info,
          tf.tensor3d(hist, [B, W - 1, E]),
        );
        const r = rgLru(
          conv.y,
          {
            recurrent_param: tf.tensor1d(rp),
            input_gate_weight: tf.tensor3d(wx, [H, BW, BW]),
            input_gate_bias: tf.tensor2d(bx, [H, BW]),
            recurrent_gate_weight: tf.tensor3d(wa, [H, BW, BW]),
            recurrent_gate_bias: tf.tensor2d(ba, [H, BW]),
          },
          info,
          tf.tensor2d(h0, [B, E]),
        );
        const out = [tf.mul(r.y, y), conv.state, r.hLast];
        disposeSequenceInfo(info);
        return out;
      });
      const gotSt = got[4];
      // The new history: slots cs + 2, ... (the next input goes to cs + 1).
      const newHist = new Float32Array(B * (W - 1) * E);
      for (let b = 0; b < B; b++) {
        for (let k = 0; k < W - 1; k++) {
          const sl = (cs + 2 + k) % W;
          newHist.set(gotSt.subarray((b * W + sl) * E, (b * W + sl + 1) * E), (b * (W - 1) + k) * E);
        }
      }
      expect(relError(got[5], want[0])).toBeLessThan(KERNEL_TOL);
      expect(relError(newHist, want[1])).toBeLessThan(KERNEL_TOL);
      expect(relError(gotSt.subarray(B * W * E), want[2])).toBeLessThan(KERNEL_TOL);
      // A document start clears the row's history: every slot but this step's input is 0.
      pos.forEach((p, b) => {
        if (p !== 0) return;
        for (let k = 0; k < W; k++)
          if (k !== cs) expect(gotSt.subarray((b * W + k) * E, (b * W + k + 1) * E).every((v) => v === 0)).toBe(true);
      });
    },
  );

  test('RG-LRU step: a row has the same bits whatever the rows per workgroup, channels, unroll and live batch', async () => {
    // The serve guarantee (FusedDecoderOptions.tuningRows): only the input slices order a row's sums.
    const E = 80,
      H = 2,
      W = 4,
      cs = 1,
      JS = 4;
    const run = async (B: number, CC: number, RB: number, U: number) => {
      const pos = lruPositions(B);
      const {step, uy, wx, wa, stepData, pk, st} = lruInputs(B, E, H, W, cs, pos);
      const spec = {B, E, H, W, CC, JS, RB, U, step};
      const got = await runKernel(
        rgLruSource(spec),
        [uy, pk, wx, wa, st, new Float32Array(B * E), stepData],
        rgLruGrid(spec),
      );
      return {o: got[5], h: got[4].subarray(B * W * E)};
    };
    const base = await run(20, 16, 20, 1);
    for (const [B, CC, RB, U] of [
      [20, 16, 8, 4],
      [20, 8, 3, 2],
      [20, 40, 1, 3],
    ]) {
      const other = await run(B, CC, RB, U);
      expect(other.o.every((v, i) => Object.is(v, base.o[i]))).toBe(true);
      expect(other.h.every((v, i) => Object.is(v, base.h[i]))).toBe(true);
    }
    // Fewer live rows (an engine of 7 rows in a server tuned for 20): the inputs of 7 rows are the
    // first rows of the 20 rows' (seeded sequences), and so are the outputs.
    for (const [CC, RB, U] of [
      [16, 8, 4],
      [8, 7, 1],
    ]) {
      const few = await run(7, CC, RB, U);
      expect(few.o.every((v, i) => Object.is(v, base.o[i]))).toBe(true);
      expect(few.h.every((v, i) => Object.is(v, base.h[i]))).toBe(true);
    }
  });

  test.each([
    ['multi-query (K = 1), 2 rows, partial rotary, one row at a document start', 2, 4, 1, 8, 4, [9, 0]],
    ['multi-head (K = H), 3 rows, full rotary', 3, 2, 2, 6, 6, [3, 40, 1]],
    [
      '10 query heads per key head, head dim 40: more scores and more of the head dim than 32 invocations',
      1,
      10,
      1,
      40,
      20,
      [30],
    ],
  ] as [string, number, number, number, number, number, number[]][])(
    'RoPE + ring store + chunked attention: %s',
    async (_n, B, H, K, HD, ROT, pos) => {
      const S = 11,
        CS = 4,
        theta = 10000;
      const spec: AttnSpec = {B, H, K, HD, ROT, S, step: stepLayout(B, ROT / 2), CS, T: 32};
      const slot = 7;
      const qkv = uniform(40, B * (H + 2 * K) * HD, -2, 2);
      const kr = uniform(41, B * S * K * HD, -2, 2),
        vr = uniform(42, B * S * K * HD, -2, 2);
      const r = seededUniform(43);
      const valid = Float32Array.from({length: B * S}, () => (r() < 0.7 ? 1 : 0));
      const stepData = new Uint32Array(spec.step.words);
      const sf = new Float32Array(stepData.buffer);
      stepData[spec.step.slot] = slot;
      pos.forEach((p, b) => {
        stepData[spec.step.pos + b] = p;
        for (let j = 0; j < ROT / 2; j++) {
          const ang = Math.fround(Math.fround(p) * Math.fround(1 / theta ** ((2 * j) / ROT)));
          sf[spec.step.cos + b * spec.step.half + j] = Math.cos(ang);
          sf[spec.step.sin + b * spec.step.half + j] = Math.sin(ang);
        }
      });
      const [, , qr, kr2, vr2, valid2] = await runKernel(
        ropeSource(spec),
        [qkv, stepData, new Float32Array(B * H * HD), kr, vr, valid],
        [B, 1, 1],
      );
      const NC = attnChunks(spec);
      const [, , , , part] = await runKernel(
        attnPartialSource(spec),
        [qr, kr2, vr2, valid2, new Float32Array(B * H * NC * (HD + 2)), stepData],
        [NC, K, B],
      );
      const [, attn] = await runKernel(attnCombineSource(spec), [part, new Float32Array(B * H * HD)], [H, B, 1]);

      // Reference: the new k/v go to `slot`; a row at position 0 sees only them.
      const [wantQ, wantK, wantAttn] = await onCpu(() => {
        const all = tf.tensor3d(qkv, [B, 1, (H + 2 * K) * HD]);
        const posT = tf.tensor2d(
          pos.map((p) => [p]),
          [B, 1],
          'int32',
        );
        const q = applyRope(tf.reshape(tf.slice(all, [0, 0, 0], [B, 1, H * HD]), [B, 1, H, HD]), posT, ROT, theta);
        const k = applyRope(tf.reshape(tf.slice(all, [0, 0, H * HD], [B, 1, K * HD]), [B, 1, K, HD]), posT, ROT, theta);
        const v = tf.reshape(tf.slice(all, [0, 0, (H + K) * HD], [B, 1, K * HD]), [B, 1, K, HD]);
        const ring = (t: Float32Array, nw: tf.Tensor) =>
          tf.concat(
            [
              tf.slice(tf.tensor4d(t, [B, S, K, HD]), [0, 0, 0, 0], [B, slot, K, HD]),
              nw,
              tf.slice(tf.tensor4d(t, [B, S, K, HD]), [0, slot + 1, 0, 0], [B, S - slot - 1, K, HD]),
            ],
            1,
          );
        const keys = ring(kr, k),
          values = ring(vr, v);
        const vis = Array.from({length: B * S}, (_, i) => {
          const b = Math.floor(i / S),
            s = i % S;
          return s === slot || (pos[b] !== 0 && valid[i] > 0) ? 0 : -1e9;
        });
        const bias = tf.tensor4d(vis, [B, 1, 1, S]);
        return [
          tf.reshape(q, [B, H * HD]),
          tf.reshape(keys, [B * S * K * HD]),
          tf.reshape(attend(q, keys, values, bias), [B, H * HD]),
        ];
      });
      expect(relError(qr, wantQ)).toBeLessThan(KERNEL_TOL);
      // The ring: the new key (rotated) at `slot` of each row, the other slots as they were.
      expect(relError(kr2, wantK)).toBeLessThan(KERNEL_TOL);
      for (let b = 0; b < B; b++) {
        for (let s = 0; s < S; s++) {
          const want = s === slot ? 1 : pos[b] === 0 ? 0 : valid[b * S + s];
          expect(valid2[b * S + s]).toBe(want);
        }
      }
      expect(relError(attn, wantAttn)).toBeLessThan(KERNEL_TOL);
      // RoPE folded into the partial kernel: the same ring, validity and attention.
      const [, kr3, vr3, valid3, part3] = await runKernel(
        attnRopePartialSource(spec),
        [qkv, kr, vr, valid, new Float32Array(B * H * NC * (HD + 2)), stepData],
        [NC, K, B],
      );
      expect(relError(kr3, wantK)).toBeLessThan(KERNEL_TOL);
      expect(Array.from(vr3)).toEqual(Array.from(vr2));
      expect(Array.from(valid3)).toEqual(Array.from(valid2));
      const [, attn3] = await runKernel(attnCombineSource(spec), [part3, new Float32Array(B * H * HD)], [H, B, 1]);
      expect(relError(attn3, wantAttn)).toBeLessThan(KERNEL_TOL);
      // The split combine: the default shape, and chunk groups that take more than one chunk each.
      for (const split of [combineSplit(spec), {JT: 2, CG: 2}]) {
        const [, got] = await runKernel(
          attnCombineSource(spec, split),
          [part, new Float32Array(B * H * HD)],
          attnCombineGrid(spec, split),
        );
        expect(relError(got, wantAttn)).toBeLessThan(KERNEL_TOL);
      }
    },
  );

  test('embedding lookup from one piece of the vocabulary matrix, scaled', async () => {
    const B = 3,
      D = 6,
      start = 10,
      rows = 5;
    const step = stepLayout(B, 1);
    const emb = uniform(50, rows * D);
    const stepData = new Uint32Array(step.words);
    [12, 3, 14].forEach((id, b) => {
      stepData[step.ids + b] = id;
    });
    const x0 = uniform(51, B * D);
    const [, , x] = await runKernel(
      embedSource({B, D, start, rows, scale: 50.5, step}),
      [emb, stepData, x0],
      [1, 1, 1],
    );
    for (let j = 0; j < D; j++) {
      expect(x[0 * D + j]).toBe(Math.fround(emb[2 * D + j] * 50.5));
      expect(x[1 * D + j]).toBe(x0[1 * D + j]); // id 3 lies in another piece
      expect(x[2 * D + j]).toBe(Math.fround(emb[4 * D + j] * 50.5));
    }
  });

  // ---- whole decode steps ---------------------------------------------------------------------

  test(`tiny-a: 60 decode steps past the window (64) equal decodeStep on cpu (${DECODE_TOL})`, async () => {
    const DIR = path.join(__dirname, '../fixtures/tiny-a');
    // The golden greedy prompt's shape: the generate test below reuses the prefill's shaders.
    const prompt = [[2, 17, 300, 45, 99, 8, 61, 400, 5, 33]];
    const ids = (i: number) => [3 + ((i * 37) % 500)];
    const run = async () => {
      const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
      const state = model.prefill(prompt);
      const out: Float32Array[] = [];
      for (let i = 0; i < 60; i++) {
        const {logits} = model.decodeStep(state, ids(i));
        out.push(Float32Array.from((await logits.data()) as Float32Array));
        logits.dispose();
      }
      const eng = tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, 1) : null;
      const used = eng != null && eng.owner === (state as unknown);
      state.dispose();
      model.dispose();
      return {out, used};
    };
    await tf.setBackend('cpu');
    const cpu = await run();
    await tf.setBackend('webgpu');
    const gpu = await run();
    expect(gpu.used).toBe(true);
    let worst = 0;
    gpu.out.forEach((g, i) => {
      worst = Math.max(worst, relError(g, cpu.out[i]));
    });
    console.log(`tiny-a fused decode vs cpu decodeStep: worst relative error ${worst.toExponential(2)} over 60 steps`);
    expect(worst).toBeLessThan(DECODE_TOL);
  });

  test('generate through the engine reproduces the HF greedy golden exactly', async () => {
    const DIR = path.join(__dirname, '../fixtures/tiny-a');
    const golden = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8')).greedy as {
      prompt: number[][];
      sequence: number[][];
    };
    await tf.setBackend('webgpu');
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const out = await model.generate(golden.prompt, {
      maxNewTokens: golden.sequence[0].length - golden.prompt[0].length,
      temperature: 0,
    });
    expect(fusedDecoderFor(model, 1)?.owner).toBeNull(); // it ran there, and let the state go when it ended
    model.dispose();
    expect(out).toEqual(golden.sequence);
  });

  test(`random model, batch 3: vocabulary pieces, untied head, q/k/v biases, multi-query, window 8, fork and select (${DECODE_TOL})`, async () => {
    const worst = await compareScenario(
      {
        cfg: SMALL_CFG,
        pieceBytes: 70 * 32 * 4, // 203 rows in 3 pieces (68, 68, 67)
        prompts: [
          [2, 5, 9, 11, 40],
          [0, 0, 2, 7, 8],
          [2, 100, 101, 102, 103],
        ],
        mask: [
          [1, 1, 1, 1, 1],
          [0, 0, 1, 1, 1],
          [1, 1, 1, 1, 1],
        ],
        steps: 12,
        forkAt: 6,
        selectRows: [2, 0],
      },
      7,
    );
    console.log(
      `random model (batch 3) fused decode vs cpu decodeStep: worst relative error ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(DECODE_TOL);
  });

  // 20 rows: GEMVs (the matmul path off), and the weight products as tiled matmuls (batched_matmul.ts).
  test.each([
    ['GeGLU split in gate and up dispatches, 64-thread GEMVs', -1],
    ['weight products as tiled matmuls', 16],
  ])(`random model, batch 20: %s (${DECODE_TOL})`, async (_n, rows) => {
    decodeMatmulConfig.rows = rows;
    const prompts = Array.from({length: 20}, (_, r) => [2, 5 + r, 9, 11 + 2 * r]);
    const worst = await compareScenario(
      {
        cfg: {
          vocab_size: 96,
          hidden_size: 16,
          lru_width: 16,
          intermediate_size: 32,
          num_attention_heads: 2,
          num_key_value_heads: 1,
          num_hidden_layers: 2,
          attention_window_size: 4,
          block_types: ['recurrent', 'attention'],
        },
        pieceBytes: 0,
        prompts,
        mask: null,
        steps: 6,
        forkAt: 2,
        selectRows: [19, 3, 0],
      },
      13,
    ).finally(() => {
      decodeMatmulConfig.rows = 0;
    });
    expect(worst).toBeLessThan(DECODE_TOL);
  });

  test(`random model, batch 1: scalar GEMV path (widths not multiples of 4), K = H heads, window 5 (${DECODE_TOL})`, async () => {
    const worst = await compareScenario(
      {
        cfg: {
          vocab_size: 97,
          hidden_size: 30,
          lru_width: 30,
          intermediate_size: 44,
          num_attention_heads: 3,
          num_key_value_heads: 3,
          num_hidden_layers: 3,
          attention_window_size: 5,
          block_types: ['attention', 'recurrent'],
          partial_rotary_factor: 0.4,
        },
        pieceBytes: 0,
        prompts: [[2, 50, 60]],
        mask: null,
        steps: 16,
        forkAt: 3,
        selectRows: null,
      },
      11,
    );
    console.log(
      `random model (batch 1) fused decode vs cpu decodeStep: worst relative error ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(DECODE_TOL);
  });

  test('on unless GRIFFIN_FUSED_DECODE=0 or fusedDecodeConfig.enabled = false; LoRA adapters and other backends keep tfjs ops', async () => {
    await tf.setBackend('webgpu');
    const model = new RecurrentGemmaForCausalLM({
      vocab_size: 64,
      hidden_size: 16,
      lru_width: 16,
      intermediate_size: 32,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      num_hidden_layers: 1,
      attention_window_size: 4,
    });
    const prev = process.env.GRIFFIN_FUSED_DECODE;
    fusedDecodeConfig.enabled = null;
    try {
      delete process.env.GRIFFIN_FUSED_DECODE;
      expect(fusedDecoderFor(model, 1)).not.toBeNull(); // the default
      for (const off of ['0', 'false', 'OFF']) {
        process.env.GRIFFIN_FUSED_DECODE = off;
        expect(fusedDecoderFor(model, 1)).toBeNull();
      }
      process.env.GRIFFIN_FUSED_DECODE = '1';
      expect(fusedDecoderFor(model, 1)).not.toBeNull();
      fusedDecodeConfig.enabled = true;
      expect(fusedDecoderFor(model, 1)).not.toBeNull();
      fusedDecodeConfig.enabled = false;
      expect(fusedDecoderFor(model, 1)).toBeNull();
      fusedDecodeConfig.enabled = true;
      expect(fusedDecoderFor(model, 33)).toBeNull(); // more rows than the kernels take
      addLora(model, {rank: 2, targets: ['linear_x']});
      expect(fusedDecoderFor(model, 1)).toBeNull(); // the engine knows nothing of adapters
      removeLora(model);
      expect(fusedDecoderFor(model, 1)).not.toBeNull();
      await tf.setBackend('cpu');
      expect(fusedDecoderFor(model, 1)).toBeNull();
    } finally {
      await tf.setBackend('webgpu');
      fusedDecodeConfig.enabled = true;
      if (prev == null) delete process.env.GRIFFIN_FUSED_DECODE;
      else process.env.GRIFFIN_FUSED_DECODE = prev;
      model.dispose();
    }
  });
});
