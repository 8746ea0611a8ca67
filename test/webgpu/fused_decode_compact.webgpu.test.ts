/**
 * The fused WebGPU decode engine on compact weights (bfloat16, float16, int8, int4 with and
 * without zero points): the GEMV and the embedding gather reading packed words, each against
 * the float reference on the unpacked values (ops/compact/format.ts `dequantize`) on random
 * inputs, for every load width; then whole decode steps of compact models through the engine
 * against decodeStep on the cpu backend with the same packed weights (tiny-a, and a random
 * model with vocabulary pieces, an untied head and biases, batch 3).
 *
 * Tolerances: float32 arithmetic on both sides over the same unpacked values, sums in other
 * orders: 1e-5 relative, as for float32 weights.
 */

import * as path from 'path';
import {vocabSplit} from '../../layers/vocab_split';
import {type CompactSpec, perWord} from '../../ops/compact/format';
import {fusedDecodeConfig, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {
  embedSource,
  GemvSpec,
  gemvBindings,
  gemvRows,
  gemvSource,
  stepLayout,
} from '../../src/engines/webgpu_decode/shaders';
import {weightFormat} from '../../src/engines/webgpu_decode/shaders/weights';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {gemvInputs, gemvReference, packedMatrix, runKernel, uniform} from './kernel_helpers';
import {randomModel, SMALL_CFG} from './random_model';

const KERNEL_TOL = 1e-5;
const DECODE_TOL = 1e-5;

const SPECS: [string, CompactSpec][] = [
  ['bfloat16', {dtype: 'bfloat16'}],
  ['float16', {dtype: 'float16'}],
  ['int8', {dtype: 'int8'}],
  ['int4 g32', {dtype: 'int4', groupSize: 32}],
  ['int4 g64 zero points', {dtype: 'int4', groupSize: 64, zeroPoints: true}],
];

describeWebGPU('fused WebGPU decode engine on compact weights', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3);
    fusedDecodeConfig.enabled = true;
  });
  afterAll(() => {
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
    fusedDecodeConfig.enabled = null;
  });

  // ---- kernels ------------------------------------------------------------------------------

  const cases: [string, number, number, number[], GemvSpec['mode'], boolean, number][] = [
    ['norm, two segments (second with gelu), 3 rows', 3, 128, [8, 4], 'store', true, 1],
    ['residual, 2 rows', 2, 128, [6], 'residual', false, 2],
    ['norm, GeGLU, 1 row', 1, 256, [4, 4], 'geglu', true, 2],
    ['norm, soft cap into a column offset, 4 rows', 4, 128, [6], 'softcap', true, 1],
    ['norm, unrolled loop + tail, 2 rows', 2, 2048, [4], 'store', true, 2],
    ['multiplied in place (the up projection of a split GeGLU), 2 rows', 2, 128, [6], 'mul', false, 1],
  ];
  /** Bindings per stage WebGPU guarantees: the plan splits larger GEMVs (tested with whole models below). */
  const MAX_BINDINGS = 8;
  for (const [dtypeName, cspec] of SPECS) {
    for (const words of [1, 2, 4]) {
      if ((words * perWord(cspec.dtype)) % 4 !== 0) continue; // a load must hold whole vec4s
      test.each(cases)(`GEMV ${dtypeName}, ${words} words per load: %s`, async (_n, B, IN, segments, mode, norm, U) => {
        const rows = gemvRows({mode, segments} as GemvSpec);
        const outStride = mode === 'softcap' ? rows + 5 : rows;
        const R = 2;
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
          weights: weightFormat(cspec),
          words,
        };
        const x = uniform(1, B * IN, -2, 2),
          g = uniform(2, IN, -0.5, 0.5);
        const mats = segments.map((n, i) => packedMatrix(uniform(10 + i, n * IN), n, IN, cspec));
        const bias = uniform(3, mode === 'geglu' ? 2 * rows : rows);
        const out0 = uniform(4, B * outStride);
        const inputs = gemvInputs({x, g, bias, out: out0}, mats);
        const names = gemvBindings(spec);
        expect(names.every((k) => inputs[k] != null)).toBe(true);
        if (names.length > MAX_BINDINGS) return; // e.g. int4 zero points over two segments: split by the plan
        const got = await runKernel(
          gemvSource(spec),
          names.map((k) => inputs[k]),
          [rows / R, 1, 1],
        );
        const gotOut = got[got.length - 1];
        const ws = mats.map((m) => m.values);
        const want = await gemvReference(spec, {x, g, ws, bias, out0});
        expect(relError(gotOut, want)).toBeLessThan(KERNEL_TOL);
      });
    }
  }

  test.each(SPECS)('embedding lookup from a %s piece, scaled', async (_n, cspec) => {
    const B = 3,
      D = 64,
      start = 10,
      rows = 5;
    const step = stepLayout(B, 1);
    const m = packedMatrix(uniform(50, rows * D), rows, D, cspec);
    const stepData = new Uint32Array(step.words);
    [12, 3, 14].forEach((id, b) => {
      stepData[step.ids + b] = id;
    });
    const x0 = uniform(51, B * D);
    const inputs = [m.words, ...(m.scales ? [m.scales] : []), ...(m.zeros ? [m.zeros] : []), stepData, x0];
    const got = await runKernel(
      embedSource({B, D, start, rows, scale: 50.5, step, weights: weightFormat(cspec)}),
      inputs,
      [1, 1, 1],
    );
    const x = got[got.length - 1];
    for (let j = 0; j < D; j++) {
      expect(x[0 * D + j]).toBeCloseTo(Math.fround(m.values[2 * D + j] * 50.5), 4);
      expect(x[1 * D + j]).toBe(x0[1 * D + j]); // id 3 lies in another piece
      expect(x[2 * D + j]).toBeCloseTo(Math.fround(m.values[4 * D + j] * 50.5), 4);
    }
  });

  // ---- whole decode steps ---------------------------------------------------------------------

  /** Logits of `steps` decode steps after a prefill, on the current backend; and whether the engine ran them. */
  async function decodeRun(
    load: () => Promise<RecurrentGemmaForCausalLM>,
    prompts: number[][],
    steps: number,
  ): Promise<{out: Float32Array[]; used: boolean}> {
    const model = await load();
    const V = model.config.vocab_size;
    const state = model.prefill(prompts);
    const out: Float32Array[] = [];
    let used = true;
    for (let i = 0; i < steps; i++) {
      const eng = tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, prompts.length) : null;
      const {logits} = model.decodeStep(
        state,
        prompts.map((_, r) => (3 + i * 37 + r * 11) % V),
      );
      if (tf.getBackend() === 'webgpu') used = used && eng != null && eng.owner === (state as unknown);
      out.push(Float32Array.from((await logits.data()) as Float32Array));
      logits.dispose();
    }
    state.dispose();
    model.dispose();
    return {out, used};
  }

  /** decodeRun on cpu, then on webgpu (the engine used at every step): the worst relative error of the logits. */
  async function worstVsCpu(
    load: () => Promise<RecurrentGemmaForCausalLM>,
    prompts: number[][],
    steps: number,
  ): Promise<number> {
    await tf.setBackend('cpu');
    const cpu = await decodeRun(load, prompts, steps);
    await tf.setBackend('webgpu');
    const gpu = await decodeRun(load, prompts, steps);
    expect(gpu.used).toBe(true);
    return Math.max(...gpu.out.map((g, i) => relError(g, cpu.out[i])));
  }

  const TINY = path.join(__dirname, '../fixtures/tiny-a');
  // tiny-a's MLP is 96 wide: int4 groups of 32.
  const TINY_SPECS = SPECS.map(([n, s]): [string, CompactSpec] =>
    s.zeroPoints ? ['int4 g32 zero points', {...s, groupSize: 32}] : [n, s],
  );
  test.each(TINY_SPECS)(
    `tiny-a held %s: 40 decode steps through the engine equal decodeStep on cpu (${DECODE_TOL})`,
    async (_n, cspec) => {
      const opts: PretrainedOptions = {dtype: cspec.dtype, groupSize: cspec.groupSize, zeroPoints: cspec.zeroPoints};
      const load = () => RecurrentGemmaForCausalLM.fromPretrained(TINY, opts);
      expect(await worstVsCpu(load, [[2, 17, 300, 45, 99, 8]], 40)).toBeLessThan(DECODE_TOL);
    },
  );

  test(`random int4 model with zero points, batch 3: vocabulary pieces, untied head, biases (${DECODE_TOL})`, async () => {
    const cfg = {...SMALL_CFG, vocab_size: 200, hidden_size: 64, lru_width: 64, intermediate_size: 128};
    // The same packed values in both models.
    const make = async () => randomModel(cfg, 9, {dtype: 'int4', groupSize: 32, zeroPoints: true});
    vocabSplit.maxPieceBytes = 70 * 64 * 4; // rows in pieces, sized by packed bytes
    try {
      const prompts = [
        [2, 5, 9, 11],
        [2, 7, 8, 1],
        [2, 100, 101, 102],
      ];
      expect(await worstVsCpu(make, prompts, 14)).toBeLessThan(DECODE_TOL);
    } finally {
      vocabSplit.maxPieceBytes = 0;
    }
  });
});
