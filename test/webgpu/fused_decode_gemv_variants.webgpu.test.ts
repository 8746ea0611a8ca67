/**
 * The fused decode GEMV's tuning variants (shaders/gemv.ts): the split reduction, x loaded lazily
 * one batch row at a time, and int8 / int4 unpacked by the 2^23 trick, alone and together, for
 * every weight format (float32, bfloat16, float16, int8, int4 with and without zero points) at
 * b = 1, 3 and 8, each against tfjs ops on the cpu backend (gemvReference) over the unpacked
 * values (ops/compact/format.ts `dequantize`) on random inputs; and the 2^23 unpacking of every int8 and
 * int4 value (including the extremes) against the stored integers.
 *
 * Tolerance: float32 on both sides, sums in other orders: 1e-5 relative.
 */

import type {CompactSpec} from '../../ops/compact/format';
import {GemvSpec, gemvBindings, gemvRows, gemvSource} from '../../src/engines/webgpu_decode/shaders';
import {slotLoad, weightFormat} from '../../src/engines/webgpu_decode/shaders/weights';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {gemvInputs, gemvReference, packedMatrix, runKernel, uniform} from './kernel_helpers';

const TOL = 1e-5;

const FORMATS: [string, CompactSpec | null][] = [
  ['float32', null],
  ['bfloat16', {dtype: 'bfloat16'}],
  ['float16', {dtype: 'float16'}],
  ['int8', {dtype: 'int8'}],
  ['int4 g32', {dtype: 'int4', groupSize: 32}],
  ['int4 g64 zero points', {dtype: 'int4', groupSize: 64, zeroPoints: true}],
];

type Variant = Pick<GemvSpec, 'reduce' | 'lazyX' | 'magic'>;
const VARIANTS: [string, Variant][] = [
  ['split', {reduce: 'split'}],
  ['lazy x', {lazyX: true}],
  ['2^23 unpack', {magic: true}],
  ['split + lazy x + 2^23 unpack', {reduce: 'split', lazyX: true, magic: true}],
];

/** Mode, norm, segments per case: rotated over the batch sizes so that each variant meets each. */
const SHAPES: [GemvSpec['mode'], boolean, number[]][] = [
  ['store', true, [8, 4]],
  ['geglu', true, [4, 4]],
  ['residual', false, [6]],
];
const SHAPES_ONE: [GemvSpec['mode'], boolean, number[]][] = [
  ['store', true, [8]],
  ['store', false, [4]],
  ['residual', false, [6]],
];

describeWebGPU('fused decode GEMV variants', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    await tf.setBackend('webgpu');
  });

  for (const [fname, cspec] of FORMATS) {
    for (const [vname, variant] of VARIANTS) {
      test.each([1, 3, 8])(`${fname}, ${vname}, b %i`, async (B) => {
        // Zero points over two matrices exceed the 8 bindings per stage (the plan splits those).
        const [mode, norm, segments] = (cspec?.zeroPoints ? SHAPES_ONE : SHAPES)[B % 3];
        const IN = 256;
        const rows = gemvRows({mode, segments} as GemvSpec);
        const R = 2;
        // Words per load: 2 (float16 / bfloat16: 4 values; int8: 8; int4: 16), 1 for float32.
        const spec: GemvSpec = {
          B,
          IN,
          segments,
          gelu: mode === 'store' ? segments.map((_, i) => i === 1) : undefined,
          mode,
          norm,
          eps: 1e-6,
          bias: true,
          outStride: rows,
          R,
          T: 32,
          U: 2,
          weights: cspec ? weightFormat(cspec) : undefined,
          words: cspec ? 2 : undefined,
          ...variant,
        };
        const x = uniform(B + 1, B * IN, -2, 2),
          g = uniform(2, IN, -0.5, 0.5);
        const mats = segments.map((n, i) => packedMatrix(uniform(10 + i, n * IN), n, IN, cspec));
        const bias = uniform(3, mode === 'geglu' ? 2 * rows : rows);
        const out0 = uniform(4, B * rows);
        const inputs = gemvInputs({x, g, bias, out: out0}, mats);
        const names = gemvBindings(spec);
        expect(names.length).toBeLessThanOrEqual(8);
        const got = await runKernel(
          gemvSource(spec),
          names.map((k) => inputs[k]),
          [rows / R, 1, 1],
        );
        const want = await gemvReference(spec, {x, g, ws: mats.map((m) => m.values), bias, out0});
        expect(relError(got[got.length - 1], want)).toBeLessThan(TOL);
      });
    }
  }

  test.each([
    ['int8', {dtype: 'int8'} as CompactSpec, 4],
    ['int4', {dtype: 'int4', groupSize: 32} as CompactSpec, 8],
  ])('2^23 unpacking of every %s value equals the stored integer', async (_n, cspec, per) => {
    const fmt = weightFormat(cspec);
    const load = slotLoad(fmt, 1, true);
    // Every value once: int8 -128..127 (as bytes, 64 words), int4 nibbles 0..15 (2 words), zp 3.
    const n = per === 4 ? 256 : 16;
    const vals = Array.from({length: n}, (_, i) => (per === 4 ? i - 128 : i));
    const words = new Uint32Array(n / per);
    vals.forEach((v, i) => {
      const bits = per === 4 ? v & 0xff : v;
      words[Math.floor(i / per)] |= bits << ((i % per) * (32 / per));
    });
    const code = `
@group(0) @binding(0) var<storage, read> w : array<u32>;
@group(0) @binding(1) var<storage, read_write> out : array<vec4<f32>>;
@compute @workgroup_size(1)
fn main() {
  for (var i = 0u; i < ${n / per}u; i = i + 1u) {
    let v = w[i];
    ${load
      .unpack('v', '3.0')
      .map((e, k) => `out[i * ${per / 4}u + ${k}u] = ${e};`)
      .join('\n    ')}
  }
}`;
    const [, out] = await runKernel(code, [words, new Float32Array(n)], [1, 1, 1]);
    expect(Array.from(out)).toEqual(vals.map((v) => (per === 4 ? v : v - 3)));
  });
});
