/**
 * GPTQ int4 (ops/compact/gptq.ts) against plain references on small random matrices: a diagonal
 * H gives exactly the data-free fit; on correlated inputs the codes equal those of the textbook
 * step-by-step update (the inverse of H over the columns not yet rounded, recomputed by Gaussian
 * elimination at every column), and the output error is below the data-free fit's, measured as
 * ||X W^T - X Q^T||^2 directly.
 */
import {dequantize, fitGroup, quantize} from '../../ops/compact/format';
import {outputError, quantizeGptq} from '../../ops/compact/gptq';
import {randomArray} from './compact_cases';

/** Inputs X [n, C] with correlated features: Z [n, C] A [C, C], A random. */
function correlatedInputs(seed: number, n: number, C: number): Float64Array {
  const z = randomArray(seed, n * C, 1);
  const a = randomArray(seed + 1, C * C, 1);
  const x = new Float64Array(n * C);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += z[t * C + k] * a[k * C + j];
      x[t * C + j] = s + (j % 7 === 0 ? 3 * z[t * C + j] : 0); // a few louder features
    }
  return x;
}

function secondMoments(x: Float64Array, n: number, C: number): Float64Array {
  const h = new Float64Array(C * C);
  for (let t = 0; t < n; t++)
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) h[i * C + j] += x[t * C + i] * x[t * C + j];
  return h.map((v) => v / n);
}

/** mean over the inputs of ||x W^T - x Q^T||^2, summed over rows. */
function directError(x: Float64Array, n: number, w: Float32Array, q: Float32Array, R: number, C: number): number {
  let e = 0;
  for (let t = 0; t < n; t++)
    for (let r = 0; r < R; r++) {
      let d = 0;
      for (let c = 0; c < C; c++) d += x[t * C + c] * (w[r * C + c] - q[r * C + c]);
      e += d * d;
    }
  return e / n;
}

/** The inverse of a symmetric positive-definite [m, m] matrix by Gauss-Jordan elimination. */
function invert(a: Float64Array, m: number): Float64Array {
  const aug = new Float64Array(m * 2 * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) aug[i * 2 * m + j] = a[i * m + j];
    aug[i * 2 * m + m + i] = 1;
  }
  for (let p = 0; p < m; p++) {
    const piv = aug[p * 2 * m + p];
    for (let j = 0; j < 2 * m; j++) aug[p * 2 * m + j] /= piv;
    for (let i = 0; i < m; i++) {
      if (i === p) continue;
      const f = aug[i * 2 * m + p];
      for (let j = 0; j < 2 * m; j++) aug[i * 2 * m + j] -= f * aug[p * 2 * m + j];
    }
  }
  const inv = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) inv[i * m + j] = aug[i * 2 * m + m + j];
  return inv;
}

/**
 * The step-by-step reference: at column i, Hi = inverse of the damped H over columns [i, C);
 * round w_i, then move every later column j by -(w_i - q_i) Hi[i, j] / Hi[i, i] (the
 * least-squares correction of the output for the columns still free). Returns the codes.
 */
function referenceCodes(w0: Float32Array, R: number, C: number, h0: Float64Array, g: number, zp: boolean): number[] {
  const h = Float64Array.from(h0);
  let mean = 0;
  for (let i = 0; i < C; i++) mean += h[i * C + i] / C;
  for (let i = 0; i < C; i++) h[i * C + i] += 0.01 * mean;
  const w = Float64Array.from(w0);
  const codes: number[] = new Array(R * C);
  const s: number[] = [],
    z: number[] = [];
  for (let i = 0; i < C; i++) {
    const m = C - i;
    const sub = new Float64Array(m * m);
    for (let a = 0; a < m; a++) for (let b = 0; b < m; b++) sub[a * m + b] = h[(i + a) * C + i + b];
    const hi = invert(sub, m);
    for (let r = 0; r < R; r++) {
      if (i % g === 0) {
        const group = Float32Array.from({length: g}, (_, c) => w[r * C + i + c]);
        const fit = fitGroup(group, new Uint8Array(g), zp);
        s[r] = fit.s;
        z[r] = fit.z;
      }
      const k = Math.max(0, Math.min(15, Math.round(w[r * C + i] / s[r]) + z[r]));
      codes[r * C + i] = k;
      const err = w[r * C + i] - Math.fround((k - z[r]) * s[r]);
      for (let j = 1; j < m; j++) w[r * C + i + j] -= (err * hi[j]) / hi[0];
    }
  }
  return codes;
}

function codesOf(p: ReturnType<typeof quantize>): number[] {
  return Array.from({length: p.rows * p.cols}, (_, i) => (p.data[i >> 3] >>> (4 * (i & 7))) & 0xf);
}

describe('GPTQ int4', () => {
  const R = 6,
    C = 64,
    n = 400;
  const w = randomArray(31, R * C, 0.5);

  test.each([false, true])(
    'a diagonal H (independent inputs) gives the data-free fit bit for bit (zero points %s)',
    (zp) => {
      const spec = {dtype: 'int4' as const, groupSize: 32, zeroPoints: zp};
      const diag = new Float64Array(C * C);
      for (let i = 0; i < C; i++) diag[i * C + i] = 1 + (i % 5);
      const a = quantizeGptq(w, R, C, diag, spec);
      const b = quantize(w, R, C, spec);
      expect(Array.from(a.data)).toEqual(Array.from(b.data));
      expect(Array.from(a.scales!)).toEqual(Array.from(b.scales!));
      expect(a.zeros == null ? null : Array.from(a.zeros)).toEqual(b.zeros == null ? null : Array.from(b.zeros));
    },
  );

  test('act-order with a diagonal H: groups fitted up front on the stored values, so the data-free fit again', () => {
    const spec = {dtype: 'int4' as const, groupSize: 32, zeroPoints: true};
    const diag = new Float64Array(C * C);
    for (let i = 0; i < C; i++) diag[i * C + i] = 1 + ((i * 7) % 11);
    const a = quantizeGptq(w, R, C, diag, spec, {actOrder: true});
    const b = quantize(w, R, C, spec);
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.scales!)).toEqual(Array.from(b.scales!));
  });

  test('act-order on correlated inputs: a lower output error than the data-free fit', () => {
    const x = correlatedInputs(70, n, C);
    const h = secondMoments(x, n, C);
    const spec = {dtype: 'int4' as const, groupSize: 32};
    const gq = dequantize(quantizeGptq(w, R, C, h, spec, {actOrder: true}));
    expect(directError(x, n, w, gq, R, C)).toBeLessThan(
      directError(x, n, w, dequantize(quantize(w, R, C, spec)), R, C),
    );
  });

  test.each([false, true])('correlated inputs: the codes of the step-by-step reference (zero points %s)', (zp) => {
    const x = correlatedInputs(40, n, C);
    const h = secondMoments(x, n, C);
    const p = quantizeGptq(w, R, C, h, {dtype: 'int4', groupSize: 32, zeroPoints: zp});
    expect(codesOf(p)).toEqual(referenceCodes(w, R, C, h, 32, zp));
  });

  test.each([32, 64])('correlated inputs: a lower output error than the data-free fit (group %i)', (g) => {
    const x = correlatedInputs(50, n, C);
    const h = secondMoments(x, n, C);
    const spec = {dtype: 'int4' as const, groupSize: g};
    const gq = dequantize(quantizeGptq(w, R, C, h, spec));
    const fq = dequantize(quantize(w, R, C, spec));
    const eG = directError(x, n, w, gq, R, C),
      eF = directError(x, n, w, fq, R, C);
    // outputError (the H form the study reports) equals the direct sum over the inputs.
    expect(outputError(w, gq, R, C, h)).toBeCloseTo(eG, 6);
    expect(eG).toBeLessThan(eF);
  });

  test('an input never seen (zero row and column of H) is rounded on its own', () => {
    const x = correlatedInputs(60, n, C);
    for (let t = 0; t < n; t++) x[t * C + 5] = 0;
    const h = secondMoments(x, n, C);
    const p = quantizeGptq(w, R, C, h, {dtype: 'int4', groupSize: 32});
    expect(dequantize(p).every(Number.isFinite)).toBe(true);
  });

  test('refuses what it cannot fit, in one line', () => {
    const h = new Float64Array(C * C);
    expect(() => quantizeGptq(w, R, C, h, {dtype: 'int8'})).toThrow('gptq: fits int4 weights, not int8');
    expect(() => quantizeGptq(w, R, C, h.subarray(1), {dtype: 'int4'})).toThrow('expected 64^2');
    expect(() => quantizeGptq(w, R, C, h, {dtype: 'int4', groupSize: 48})).toThrow('group size');
    expect(() => quantizeGptq(w, R, C, h, {dtype: 'int4'}, {damp: 2})).toThrow('damp must be in [0, 1]');
  });
});
