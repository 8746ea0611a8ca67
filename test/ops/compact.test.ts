/**
 * Compact weights: the packing format against hand-computed words and error bounds, and the
 * host kernels (cpu, wasm) against the reference (test/ops/compact_cases.ts).
 */
import {checkSpec, dequantize, packedBytes, quantize, valueAt} from '../../ops/compact/format';
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
          else {
            const G = spec.dtype === 'int4' ? C / spec.groupSize! : 1;
            const g = spec.dtype === 'int4' ? r * G + Math.floor(c / spec.groupSize!) : r;
            // Half a step, plus the float16 rounding of the scale over up to 127 steps.
            expect(Math.abs(got - x)).toBeLessThanOrEqual(p.scales![g] * (0.5 + 127 * 2 ** -11));
          }
        }
      }
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
