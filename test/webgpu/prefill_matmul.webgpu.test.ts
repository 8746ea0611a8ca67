/**
 * The prefill engine's tiled matmul (src/engines/webgpu_prefill/shaders/matmul.ts) on SwiftShader
 * against a plain float64 reference computed from the unpacked weights (ops/compact/format.ts
 * dequantize): every weight format x epilogue x fused norm, ragged M (1, tile +- 1, 16384), the
 * tunings' code paths (prefetch, double buffering, register blocks, compact load widths, tile order), strides
 * and offsets, block-diagonal weights. Tolerance: ||got - want|| / ||want|| < 1e-5 (float32
 * accumulation over K <= 128 against float64).
 */

import {dequantize, quantize} from '../../ops/compact/format';
import {type WeightFormat, weightFormat} from '../../src/engines/webgpu_decode/shaders/weights';
import {
  DEVICE_SUBGROUP,
  holdUnsplitMatmuls,
  MATMUL_ORDER,
  MATMUL_ORDER_UNSPLIT,
  MATMUL_VARIANTS,
  type MatmulSpec,
  type MatmulTuning,
  matmulBindings,
  matmulGrid,
  matmulMaxSplit,
  matmulPartFloats,
  matmulReduceBindings,
  matmulReduceGrid,
  matmulReduceSource,
  matmulSource,
  matmulSplits,
  matmulSubgroupSize,
  matmulTuningFor,
  parseMatmulTuning,
} from '../../src/engines/webgpu_prefill/shaders/matmul';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {runKernel, uniform} from './kernel_helpers';

const TOL = 1e-5;

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

interface Case {
  spec: MatmulSpec;
  M: number;
  tuning?: Partial<MatmulTuning>;
  seed: number;
}

/** Runs one case on the GPU and in float64; returns [got, want] over the whole out buffer. */
async function runCase({spec, M, tuning, seed}: Case): Promise<[Float32Array, Float64Array]> {
  const {N, K} = spec;
  const NB = spec.blocks ?? 1;
  const xStride = spec.xStride ?? NB * K,
    xOffset = spec.xOffset ?? 0;
  const outStride = spec.outStride ?? NB * N,
    outOffset = spec.outOffset ?? 0;
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  const x = uniform(seed, Math.max(1, M) * xStride, -2, 2);
  const g = uniform(seed + 1, K, -0.5, 0.5);
  const bias = uniform(seed + 2, P * NB * N);
  const out0 = uniform(seed + 3, Math.max(1, M) * outStride);
  // Weights: [N, K] per matrix (blocks: [blocks, K, N] float32), and their unpacked values.
  const fmt = spec.weight;
  const mats: {words: Float32Array | Uint32Array; s?: Float32Array; z?: Float32Array; vals: Float32Array}[] = [];
  for (let p = 0; p < P; p++) {
    const w = uniform(seed + 10 + p, NB * N * K, -0.3, 0.3);
    if (fmt.dtype === 'float32') {
      mats.push({words: w, vals: w});
    } else {
      const q = quantize(w, N, K, {
        dtype: fmt.dtype,
        ...(fmt.dtype === 'int4' ? {groupSize: fmt.groupSize, zeroPoints: fmt.zeroPoints} : {}),
      });
      mats.push({
        words: new Uint32Array(q.data.buffer),
        s: q.scales ?? undefined,
        z: q.zeros ?? undefined,
        vals: dequantize(q),
      });
    }
  }
  // The reference.
  const want = Float64Array.from(out0);
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < NB; b++) {
      const xr = (k: number) => x[m * xStride + xOffset + b * K + k];
      let rs = 1;
      if (spec.norm) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xr(k) ** 2;
        rs = 1 / Math.sqrt(s / K + spec.norm.eps);
      }
      const xn = Float64Array.from({length: K}, (_, k) => (spec.norm ? xr(k) * rs * (1 + g[k]) : xr(k)));
      for (let n = 0; n < N; n++) {
        const v = [0, 0];
        for (let p = 0; p < P; p++) {
          const w = mats[p].vals;
          let s = 0;
          for (let k = 0; k < K; k++) s += xn[k] * (spec.blocks != null ? w[(b * K + k) * N + n] : w[n * K + k]);
          v[p] = s + (spec.bias ? bias[p * N + b * N + n] : 0);
        }
        const o = m * outStride + outOffset + b * N + n;
        const cap = spec.cap ?? 1;
        switch (spec.epilogue) {
          case 'store':
            want[o] = v[0];
            break;
          case 'gelu':
            want[o] = gelu(v[0]);
            break;
          case 'residual':
            want[o] = out0[o] + v[0];
            break;
          case 'mul':
            want[o] = out0[o] * v[0];
            break;
          case 'geglu':
            want[o] = gelu(v[0]) * v[1];
            break;
          case 'softcap':
            want[o] = cap * Math.tanh(v[0] / cap);
            break;
        }
      }
    }
  }
  // Buffers in binding order.
  const byName: Record<string, Float32Array | Uint32Array> = {
    dims: Uint32Array.of(M, M, 0, 0),
    x,
    g,
    bias,
    out: out0,
  };
  mats.forEach((mt, p) => {
    byName[`w${p}`] = mt.words;
    if (mt.s) byName[`s${p}`] = mt.s;
    if (mt.z) byName[`z${p}`] = mt.z;
  });
  const limit = (tf.backend() as unknown as {device: GPUDevice}).device.limits.maxStorageBuffersPerShaderStage;
  if (matmulBindings(spec).length <= limit) return [await dispatch(spec, M, tuning, byName), want];
  // GeGLU past the device's binding limit: gate with gelu, then up with mul (what the engine does then).
  expect(spec.epilogue).toBe('geglu');
  const half = (p: number) => bias.subarray(p * N, (p + 1) * N);
  const gate = await dispatch({...spec, epilogue: 'gelu'}, M, tuning, {...byName, bias: half(0)});
  const up = {...byName, w0: byName.w1, s0: byName.s1, z0: byName.z1, bias: half(1), out: gate};
  return [await dispatch({...spec, epilogue: 'mul'}, M, tuning, up), want];
}

/** One dispatch of the kernel on buffers by binding name; returns out. */
async function dispatch(
  spec: MatmulSpec,
  M: number,
  tuning: Partial<MatmulTuning> | undefined,
  byName: Record<string, Float32Array | Uint32Array>,
): Promise<Float32Array> {
  const names = matmulBindings(spec, tuning);
  if (!matmulSplits(spec, tuning)) {
    const res = await runKernel(
      matmulSource(spec, tuning),
      names.map((n) => byName[n]),
      matmulGrid(spec, M, tuning),
    );
    return res[res.length - 1];
  }
  // Split-K: the partial sums (a buffer of NaN, so that a slot the first pass misses shows), then the reduce pass.
  const part0 = new Float32Array(Math.max(4, matmulPartFloats(spec, M, tuning))).fill(Number.NaN);
  const first = await runKernel(
    matmulSource(spec, tuning),
    names.map((n) => (n === 'part' ? part0 : byName[n])),
    matmulGrid(spec, M, tuning),
  );
  const part = first[first.length - 1];
  const reduce = {...byName, part};
  const res = await runKernel(
    matmulReduceSource(spec, tuning),
    matmulReduceBindings(spec).map((n) => reduce[n]),
    matmulReduceGrid(spec, M),
  );
  return res[res.length - 1];
}

const fmt = (dtype: WeightFormat['dtype'], groupSize?: number, zeroPoints?: boolean) =>
  weightFormat({dtype, groupSize, zeroPoints});
/** Every format x epilogue x norm. */
const FORMATS: [string, WeightFormat][] = [
  ['float32', fmt('float32')],
  ['bfloat16', fmt('bfloat16')],
  ['float16', fmt('float16')],
  ['int8', fmt('int8')],
  ['int4 g64', fmt('int4', 64)],
  ['int4 g64 zp', fmt('int4', 64, true)],
];
/** The other int4 group sizes, on two epilogues. */
const GROUPS: [string, WeightFormat][] = [
  ['int4 g32', fmt('int4', 32)],
  ['int4 g32 zp', fmt('int4', 32, true)],
  ['int4 g128', fmt('int4', 128)],
  ['int4 g128 zp', fmt('int4', 128, true)],
];
const EPILOGUES = ['store', 'gelu', 'residual', 'mul', 'geglu', 'softcap'] as const;
/** A small tile, so that the shapes below cover several tiles and ragged edges. */
const SMALL: Partial<MatmulTuning> = {bm: 16, bn: 16, bk: 8, tm: 4, tn: 4};

describeWebGPU('prefill matmul on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  const combos = FORMATS.flatMap(([name, weight], f) =>
    EPILOGUES.flatMap((epilogue, e) => [false, true].map((norm) => ({name, weight, epilogue, norm, f, e}))),
  );
  test.each(combos)('$name $epilogue norm=$norm', async ({weight, epilogue, norm, f, e}) => {
    const spec: MatmulSpec = {
      N: 40, // not a multiple of the tile
      K: 128,
      weight,
      epilogue,
      ...(norm ? {norm: {eps: 1e-6}} : {}),
      bias: (f + e + (norm ? 1 : 0)) % 2 === 0,
      ...(epilogue === 'softcap' ? {cap: 3} : {}),
    };
    const [got, want] = await runCase({spec, M: 21, tuning: SMALL, seed: 100 * f + 10 * e + (norm ? 1 : 0)});
    expect(relError(got, want)).toBeLessThan(TOL);
  });

  test.each(
    GROUPS.flatMap(([name, weight]) => [
      {name, weight, epilogue: 'residual' as const, norm: true},
      {name, weight, epilogue: 'geglu' as const, norm: false},
    ]),
  )('$name $epilogue norm=$norm', async ({weight, epilogue, norm}) => {
    const spec: MatmulSpec = {N: 40, K: 128, weight, epilogue, ...(norm ? {norm: {eps: 1e-6}} : {}), bias: norm};
    const [got, want] = await runCase({spec, M: 21, tuning: SMALL, seed: 77});
    expect(relError(got, want)).toBeLessThan(TOL);
  });

  const tunings: [string, Partial<MatmulTuning>][] = [
    ['the defaults', {}],
    ['no prefetch', {prefetch: false}],
    ['double buffers', {buffers: 2}],
    ['8x8 per thread', {bm: 64, bn: 64, bk: 8, tm: 8, tn: 8, buffers: 2}],
    ['bk 32, 2 words per load', {bm: 32, bn: 32, bk: 32, words: 2}],
    ['M tiles in runs of 3 (the last short)', {...SMALL, group: 3}],
    ['tiles row by row', {...SMALL, group: 0}],
  ];
  const tuned = tunings.map(([tname, tuning]) => ({tname, tuning, fname: 'float32', weight: fmt('float32')}));
  tuned.push({tname: 'the defaults', tuning: {}, fname: 'bfloat16', weight: fmt('bfloat16')});
  tuned.push({tname: 'the defaults', tuning: {}, fname: 'int4 g32', weight: fmt('int4', 32)});
  tuned.push({tname: '8x8 per thread', tuning: tunings[3][1], fname: 'int8', weight: fmt('int8')});
  test.each(tuned)('tuning $tname, $fname, geglu with norm and bias, ragged M and N', async ({tuning, weight}) => {
    const spec: MatmulSpec = {N: 72, K: 96, weight, epilogue: 'geglu', norm: {eps: 1e-5}, bias: true};
    const [got, want] = await runCase({spec, M: 130, tuning, seed: 130});
    expect(relError(got, want)).toBeLessThan(TOL);
  });

  // The variants of the tuning knobs (spread, unroll, split-K, subgroups), each on formats x
  // epilogues x norm, ragged M (0, 1, many), block-diagonal weights. sg: 4 is SwiftShader's subgroup
  // size (those run only where the device has subgroups of that fixed size).
  const sg = () => matmulSubgroupSize((tf.backend() as unknown as {device: GPUDevice}).device);
  const VARIANTS: [string, Partial<MatmulTuning>][] = [
    ...Object.entries(MATMUL_VARIANTS),
    ['spread 8x8, small tile', {bm: 32, bn: 32, bk: 8, tm: 8, tn: 8, spread: true}],
    [
      'spread 4x16, unrolled, double buffers',
      {bm: 16, bn: 64, bk: 8, tm: 4, tn: 16, spread: true, unroll: true, buffers: 2},
    ],
    ['split-K in 5 (uneven slices), small tile', {...SMALL, splitk: 5}],
    [
      'split-K in 3, no prefetch, 8x8 spread',
      {bm: 32, bn: 32, bk: 8, tm: 8, tn: 8, spread: true, splitk: 3, prefetch: false},
    ],
    ['split-K double buffered', {...SMALL, splitk: 2, buffers: 2}],
    ['sg 4, small tile', {...SMALL, sg: 4}],
    ['sg 4, no prefetch', {...SMALL, sg: 4, prefetch: false}],
    ['sg 4, 8x8 spread, double buffers', {bm: 32, bn: 32, bk: 8, tm: 8, tn: 8, spread: true, buffers: 2, sg: 4}],
    ['sg 4, 2 columns of threads (shuffles)', {bm: 64, bn: 16, bk: 8, tm: 8, tn: 8, sg: 4}],
    ['sg 4 with split-K in 3', {...SMALL, sg: 4, splitk: 3}],
    ["sg 4, the defaults' tile", {sg: 4}],
    ['coalesced loads, the defaults', {coalesce: true}],
    [
      'coalesced loads, 32 x 32 tiles, bk 8, double buffers',
      {bm: 32, bn: 32, bk: 8, tm: 4, tn: 4, buffers: 2, coalesce: true},
    ],
    [
      'coalesced loads, split-K in 3, spread, unrolled',
      {bm: 32, bn: 32, bk: 8, tm: 4, tn: 4, splitk: 3, spread: true, unroll: true, coalesce: true},
    ],
  ];
  // Per variant: float32 GeGLU with norm and bias at M = 130, and one of the format x epilogue x
  // norm combinations (rotating over the variants, so that together they cover them) at M = 0, 1, 300.
  const variantCases = VARIANTS.flatMap(([vname, tuning], v) => {
    const [fname, weight] = FORMATS[v % FORMATS.length];
    const epilogue = EPILOGUES[(5 * v + 1) % EPILOGUES.length];
    return [
      {vname, tuning, fname: 'float32', weight: fmt('float32'), epilogue: 'geglu' as const, norm: true, Ms: [130], v},
      {vname, tuning, fname, weight, epilogue, norm: v % 2 === 1, Ms: [0, 1, 300], v},
    ];
  });
  test.each(variantCases)('variant $vname: $fname $epilogue norm=$norm, M = $Ms', async (c) => {
    if (c.tuning.sg != null && c.tuning.sg !== sg()) return; // no subgroups of that size here
    const spec: MatmulSpec = {
      N: 72,
      K: 192,
      weight: c.weight,
      epilogue: c.epilogue,
      ...(c.norm ? {norm: {eps: 1e-5}} : {}),
      bias: c.epilogue === 'geglu' || c.v % 3 !== 0,
      ...(c.epilogue === 'softcap' ? {cap: 3} : {}),
    };
    for (const M of c.Ms) {
      const [got, want] = await runCase({spec, M, tuning: c.tuning, seed: 500 + 10 * c.v + M});
      expect(relError(got, want)).toBeLessThan(TOL);
    }
  });
  test.each(VARIANTS)('variant %s: block-diagonal weights, K not a multiple of the K-step', async (_, tuning) => {
    if (tuning.sg != null && tuning.sg !== sg()) return;
    const spec: MatmulSpec = {N: 24, K: 136, weight: fmt('float32'), epilogue: 'residual', bias: true, blocks: 3};
    const [got, want] = await runCase({spec, M: 33, tuning, seed: 19});
    expect(relError(got, want)).toBeLessThan(TOL);
  });
  // Coalesced loads change which thread loads what, not the order of a value's sums: bit-identical.
  test.each([
    ['float32 geglu with norm and bias', fmt('float32'), 'geglu' as const, true],
    ['bfloat16 residual', fmt('bfloat16'), 'residual' as const, false],
    ['int8 store with norm', fmt('int8'), 'store' as const, true],
  ])('coalesced loads give the same bits as the defaults: %s', async (_, weight, epilogue, norm) => {
    const spec: MatmulSpec = {N: 96, K: 160, weight, epilogue, ...(norm ? {norm: {eps: 1e-6}} : {}), bias: true};
    const tile = {bm: 32, bn: 32, bk: 16, tm: 4, tn: 4};
    const [plain] = await runCase({spec, M: 77, tuning: tile, seed: 9});
    const [coalesced] = await runCase({spec, M: 77, tuning: {...tile, coalesce: true}, seed: 9});
    expect(Array.from(coalesced)).toEqual(Array.from(plain));
  });
  test('the device offers subgroups of a fixed size (SwiftShader: 4), so the sg variants ran', () => {
    expect(sg()).toBe(4);
  });

  test('K not a multiple of the K-step, M = 1 .. tile + 1', async () => {
    const spec: MatmulSpec = {
      N: 36,
      K: 36,
      weight: fmt('float32'),
      epilogue: 'store',
      norm: {eps: 1e-6},
    };
    for (const M of [1, 17]) {
      const [got, want] = await runCase({spec, M, tuning: SMALL, seed: 7 + M});
      expect(relError(got, want)).toBeLessThan(TOL);
    }
  });

  test('M = 16384 rows', async () => {
    const spec: MatmulSpec = {N: 8, K: 16, weight: fmt('bfloat16'), epilogue: 'residual', bias: true};
    const [got, want] = await runCase({spec, M: 16384, seed: 5});
    expect(relError(got, want)).toBeLessThan(TOL);
  });

  test('M = 0 writes nothing', async () => {
    const spec: MatmulSpec = {N: 8, K: 16, weight: fmt('float32'), epilogue: 'store'};
    const [got, want] = await runCase({spec, M: 0, seed: 6});
    expect(Array.from(got)).toEqual(Array.from(want, (v) => Math.fround(v)));
  });

  test.each([
    ['vec4 out', {xStride: 136, xOffset: 4, outStride: 52, outOffset: 8}],
    ['scalar out', {xStride: 132, xOffset: 0, outStride: 47, outOffset: 3}],
  ])('strides and offsets: %s', async (_, strides) => {
    for (const [, weight] of [FORMATS[0], FORMATS[5]]) {
      const spec: MatmulSpec = {N: 40, K: 128, weight, epilogue: 'residual', norm: {eps: 1e-6}, bias: true, ...strides};
      const [got, want] = await runCase({spec, M: 19, tuning: SMALL, seed: 3});
      expect(relError(got, want)).toBeLessThan(TOL);
    }
  });

  test.each(['store', 'residual', 'gelu'] as const)('block-diagonal weights, %s', async (epilogue) => {
    const spec: MatmulSpec = {N: 24, K: 40, weight: fmt('float32'), epilogue, bias: true, blocks: 3};
    const [got, want] = await runCase({spec, M: 33, tuning: epilogue === 'store' ? {} : SMALL, seed: 9});
    expect(relError(got, want)).toBeLessThan(TOL);
  });
});

describe('prefill matmul: specs it refuses', () => {
  const f32w = fmt('float32');
  test.each([
    [{N: 6, K: 8}, /multiples of 4/],
    [{N: 8, K: 10}, /multiples of 4/],
    [{N: 8, K: 8, xOffset: 2}, /xStride and xOffset/],
    [{N: 8, K: 8, epilogue: 'softcap' as const}, /cap/],
    [{N: 8, K: 32, weight: weightFormat({dtype: 'int4', groupSize: 64})}, /group size 64/],
    [{N: 8, K: 8, blocks: 2, weight: weightFormat({dtype: 'int8'})}, /float32 only/],
  ])('%j is refused: %s', (partial, why) => {
    const spec = {weight: f32w, epilogue: 'store' as const, ...partial} as MatmulSpec;
    expect(() => matmulSource(spec)).toThrow(why);
  });
  test('a bad tuning', () => {
    const spec: MatmulSpec = {N: 8, K: 8, weight: f32w, epilogue: 'store'};
    expect(() => matmulSource(spec, {bm: 48})).toThrow(/powers of two/);
    expect(() => matmulSource(spec, {bm: 256, bn: 256, tm: 4, tn: 4})).toThrow(/threads per workgroup/);
    expect(() => matmulSource(spec, {bk: 4, splitk: 3})).toThrow(/more than the 2 K-steps/);
    expect(() => matmulSource(spec, {sg: 6})).toThrow(/sg must be/);
    expect(() => matmulSource(spec, {bm: 16, bn: 32, bk: 4, tm: 4, tn: 4, sg: 8})).toThrow(/cannot share/);
  });
});

describe('prefill matmul tunings', () => {
  const spec: MatmulSpec = {N: 2560, K: 2560, weight: fmt('float32'), epilogue: 'store'};
  test('the env form parses, and a bad knob is refused in one line', () => {
    expect(parseMatmulTuning('bm=64, bn=32,prefetch=0,group=4')).toEqual({bm: 64, bn: 32, prefetch: false, group: 4});
    expect(() => parseMatmulTuning('bm=64,tile=3')).toThrow(/bad knob "tile=3"/);
    expect(() => parseMatmulTuning('bm=-1')).toThrow(/bad knob/);
    expect(parseMatmulTuning('spread=1,unroll=0,splitk=4,sg=32')).toEqual({
      spread: true,
      unroll: false,
      splitk: 4,
      sg: 32,
    });
    expect(parseMatmulTuning('big,bk=16')).toEqual({...MATMUL_VARIANTS.big, bk: 16});
    expect(() => parseMatmulTuning('huge')).toThrow(/bad knob "huge"/);
  });
  test('matmulTuningFor: the defaults for many rows, split over K where they would leave workgroups idle', () => {
    // 2560 x 2560 in 128 x 64 tiles: 40 column tiles x ceil(M / 128) row tiles; unsplit from 640
    // workgroups, else split until 1280.
    expect(matmulTuningFor(spec, 4096)).toEqual({}); // 40 x 32 = 1280
    expect(matmulTuningFor(spec, 2048)).toEqual({}); // 640
    expect(matmulTuningFor(spec, 2048, {unsplitWorkgroups: 1000})).toMatchObject({splitk: 2}); // 640 x 2
    expect(matmulTuningFor(spec, 1024)).toMatchObject({splitk: 4}); // 320 x 4 (x 2: 640, short of 1280)
    expect(matmulTuningFor(spec, 512)).toMatchObject({splitk: 8, spread: true, unroll: true}); // 160 x 8
    // 128 rows: 40 x 8 = 320, short of 1280 with the last entry: the last is taken.
    expect(matmulTuningFor(spec, 128)).toMatchObject({splitk: 8});
    expect(matmulGrid(spec, 128, matmulTuningFor(spec, 128))).toEqual([40, 1, 8]);
    // Up to 16 slices: 128 rows take 16 (640, still short: the last), 256 rows 16 (80 x 16 = 1280).
    expect(matmulTuningFor(spec, 128, {maxSplit: 16})).toMatchObject({splitk: 16});
    expect(matmulTuningFor(spec, 256, {maxSplit: 16})).toMatchObject({splitk: 16});
    expect(matmulTuningFor(spec, 512, {maxSplit: 16})).toMatchObject({splitk: 8}); // 160 x 8
    // Unsplit (maxSplit 1): smaller tiles until 264 workgroups (128 x 64: 40 per 128 rows; 64 x 64:
    // 80 per 64 rows; 32 x 64: 40 per 32 rows; 32 x 32: 80 per 32 rows).
    expect(matmulTuningFor(spec, 2048, {maxSplit: 1})).toEqual({}); // 640
    expect(matmulTuningFor(spec, 512, {maxSplit: 1})).toMatchObject({bm: 64, bn: 64}); // 320
    expect(matmulTuningFor(spec, 256, {maxSplit: 1})).toMatchObject({bm: 32, bn: 64}); // 320
    expect(matmulTuningFor(spec, 128, {maxSplit: 1})).toMatchObject({bm: 32, bn: 32}); // 320
    expect(matmulTuningFor(spec, 64, {maxSplit: 1})).toEqual(MATMUL_ORDER_UNSPLIT[3]); // 160: the last
  });
  test('holdUnsplitMatmuls: split-K off while any hold lasts (nested, release idempotent)', () => {
    const saved = process.env.GRIFFIN_PREFILL_MM_SPLIT;
    delete process.env.GRIFFIN_PREFILL_MM_SPLIT;
    try {
      expect(matmulMaxSplit()).toBe(8);
      const a = holdUnsplitMatmuls();
      const b = holdUnsplitMatmuls();
      expect(matmulMaxSplit()).toBe(1);
      expect(matmulTuningFor(spec, 128)).toMatchObject({bm: 32, bn: 32});
      a();
      a(); // a second release of the same hold does nothing
      expect(matmulMaxSplit()).toBe(1);
      b();
      expect(matmulMaxSplit()).toBe(8);
      expect(matmulTuningFor(spec, 128)).toMatchObject({splitk: 8});
      process.env.GRIFFIN_PREFILL_MM_SPLIT = '4';
      expect(matmulMaxSplit()).toBe(4);
      process.env.GRIFFIN_PREFILL_MM_SPLIT = '0';
      expect(() => matmulMaxSplit()).toThrow(/GRIFFIN_PREFILL_MM_SPLIT must be an integer in \[1, 64\], got "0"/);
    } finally {
      if (saved == null) delete process.env.GRIFFIN_PREFILL_MM_SPLIT;
      else process.env.GRIFFIN_PREFILL_MM_SPLIT = saved;
    }
    // The old rule (264 workgroups): 2048 rows unsplit, 128 rows split in 8 (320).
    expect(matmulTuningFor(spec, 2048, {minWorkgroups: 264})).toEqual({});
    expect(matmulTuningFor(spec, 256, {minWorkgroups: 264})).toMatchObject({splitk: 4}); // 80 x 4
  });
  test('matmulTuningFor follows MATMUL_ORDER: split-K counts its slices, sg entries only with subgroups', () => {
    const saved = MATMUL_ORDER.splice(0, MATMUL_ORDER.length, {}, {splitk: 4}, {splitk: 8}, {sg: DEVICE_SUBGROUP});
    try {
      // 128 rows: 40 workgroups of 128 x 64, 160 split in 4, 320 split in 8 (>= 264).
      expect(matmulTuningFor(spec, 128, {minWorkgroups: 264})).toEqual({splitk: 8});
      expect(matmulTuningFor(spec, 128, {minWorkgroups: 100})).toEqual({splitk: 4});
      expect(matmulTuningFor(spec, 2048, {minWorkgroups: 264})).toEqual({});
      expect(matmulTuningFor(spec, 1024)).toEqual({splitk: 4}); // the defaults want 1280 split: 320 x 4
      // None gives 2000 workgroups: the last that runs (sg only where the device has subgroups).
      expect(matmulTuningFor(spec, 128, {minWorkgroups: 2000})).toEqual({splitk: 8});
      expect(matmulTuningFor(spec, 128, {minWorkgroups: 2000, subgroupSize: 32})).toEqual({sg: 32});
      // Split in 8 is more than a K of 64 has K-steps (4): skipped.
      const narrow: MatmulSpec = {...spec, K: 64};
      expect(matmulTuningFor(narrow, 128, {minWorkgroups: 150})).toEqual({splitk: 4});
    } finally {
      MATMUL_ORDER.splice(0, MATMUL_ORDER.length, ...saved);
    }
  });
});
