/**
 * Compact weights: the packing format against hand-computed words and error bounds, and the
 * host kernels (cpu, wasm) against the reference (test/ops/compact_cases.ts).
 */
import {checkSpec, dequantize, packedBytes, quantize, valueAt} from '../../ops/compact/format';
import {f16ToF32, f32ToF16} from '../../ops/compact/half';
import {useBackend} from '../../src/backend';
import {tf} from '../../src/tf';
import {compactKernelCases, randomArray, SPECS} from './compact_cases';

describe('compact format', () => {
  test('words hold the values as documented', () => {
    // bfloat16: 1.0 is 0x3f80, -2.0 is 0xc000; element 0 in the low half.
    expect(quantize(Float32Array.of(1, -2), 1, 2, {dtype: 'bfloat16'}).data[0] >>> 0).toBe(0xc0003f80);
    // float16: 1.0 is 0x3c00, -2.0 is 0xc000.
    expect(quantize(Float32Array.of(1, -2), 1, 2, {dtype: 'float16'}).data[0] >>> 0).toBe(0xc0003c00);
    // int8: scale max|w| / 127 = 1 (rounded to float16: exact), bytes 127, -127, 0, 64 (63.5 rounds away from 0).
    const i8 = quantize(Float32Array.of(127, -127, 0, 63.5), 1, 4, {dtype: 'int8'});
    expect(Array.from(i8.scales!)).toEqual([1]);
    expect(i8.data[0] >>> 0).toBe(0x40_00_81_7f);
    // int4 symmetric: scale 7 / 7 = 1, q = round(w) + 8.
    const i4 = quantize(
      Float32Array.from({length: 32}, (_, i) => (i % 15) - 7),
      1,
      32,
      {dtype: 'int4', groupSize: 32},
    );
    expect(Array.from(i4.scales!)).toEqual([1]);
    expect(i4.data[0] >>> 0).toBe(0x8765_4321);
    expect(Array.from(dequantize(i4))).toEqual(Array.from({length: 32}, (_, i) => (i % 15) - 7));
  });

  test('each dtype stays within its rounding bound of the float32 values', () => {
    const R = 16,
      C = 128;
    const v = randomArray(11, R * C, 3);
    for (const spec of SPECS) {
      const p = quantize(v, R, C, spec);
      for (let r = 0; r < R; r++) {
        for (let c = 0; c < C; c++) {
          const x = v[r * C + c],
            got = valueAt(p, r, c);
          if (spec.dtype === 'bfloat16') expect(Math.abs(got - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8);
          else if (spec.dtype === 'float16') expect(Math.abs(got - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
          else if (spec.dtype === 'int8') {
            // Half a step, plus the float16 rounding of the scale over up to 127 steps.
            expect(Math.abs(got - x)).toBeLessThanOrEqual(p.scales![r] * (0.5 + 127 * 2 ** -11));
          }
        }
      }
    }
  });

  test('int4 groups: never a larger squared error than plain max-range rounding, and less on random data', () => {
    const R = 16,
      C = 256;
    const v = randomArray(12, R * C, 3);
    const f16 = (x: number) => f16ToF32(f32ToF16(Float32Array.of(x)))[0]; // scales are float16
    for (const spec of SPECS.filter((s) => s.dtype === 'int4')) {
      const gs = spec.groupSize!;
      const p = quantize(v, R, C, spec);
      let fitted = 0,
        plain = 0;
      for (let r = 0; r < R; r++) {
        for (let g0 = 0; g0 < C; g0 += gs) {
          const x = Array.from(v.subarray(r * C + g0, r * C + g0 + gs));
          // Plain rounding, computed here: symmetric s = max|x| / 7, codes round(x / s) + 8 in [0, 15];
          // with zero points s = (max - min) / 15 over a range holding 0, z = round(-min / s).
          const lo = Math.min(0, ...x),
            hi = Math.max(0, ...x);
          const s = f16(spec.zeroPoints ? (hi - lo) / 15 : Math.max(-lo, hi) / 7);
          const z = spec.zeroPoints ? Math.max(0, Math.min(15, Math.round(-lo / s))) : 8;
          let ePlain = 0,
            eFit = 0;
          x.forEach((xi, c) => {
            const k = Math.max(0, Math.min(15, Math.round(xi / s) + z));
            ePlain += (xi - (k - z) * s) ** 2;
            eFit += (xi - valueAt(p, r, g0 + c)) ** 2;
          });
          expect(eFit).toBeLessThanOrEqual(ePlain * (1 + 1e-6));
          fitted += eFit;
          plain += ePlain;
        }
      }
      expect(fitted).toBeLessThan(0.95 * plain);
    }
  });

  test('bad shapes and options are refused in one line', () => {
    const msg = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(msg(() => checkSpec({dtype: 'int4', groupSize: 64}, 4, 96))).toBe(
      'matrix: group size 64 does not divide the width 96',
    );
    expect(msg(() => checkSpec({dtype: 'int4', groupSize: 48}, 4, 96))).toMatch(
      /group size must be one of 32, 64, 128/,
    );
    expect(msg(() => checkSpec({dtype: 'int8'}, 4, 6))).toMatch(/width 6 is not a multiple of 4/);
    expect(msg(() => checkSpec({dtype: 'int3' as never}, 4, 8))).toMatch(/^unknown compact dtype "int3"/);
    expect(msg(() => checkSpec({dtype: 'int8', groupSize: 32}, 4, 64))).toMatch(/for int4 only/);
    expect(msg(() => quantize(new Float32Array(5), 2, 4, {dtype: 'int8'}))).toMatch(/5 values for a \[2, 4\] matrix/);
  });

  test('bytes per matrix: 16-bit halves float32, int8 a quarter plus a scale per row, int4 an eighth plus scales', () => {
    expect(packedBytes('bfloat16', 2560, 2560)).toBe(2560 * 2560 * 2);
    expect(packedBytes('int8', 2560, 2560)).toBe(2560 * 2560 + 2560 * 4);
    expect(packedBytes('int4', 2560, 2560, 64)).toBe((2560 * 2560) / 2 + ((2560 * 2560) / 64) * 4);
    expect(packedBytes('int4', 2560, 2560, 64, true)).toBe((2560 * 2560) / 2 + ((2560 * 2560) / 64) * 8);
  });
});

describe('compact kernels on cpu', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });
  compactKernelCases(1e-5);
});

describe('compact kernels on wasm', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });
  compactKernelCases(1e-5);
});
