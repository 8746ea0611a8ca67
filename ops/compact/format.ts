/**
 * Compact weight matrices: how a [rows, cols] float32 matrix (a Linear's [out, in] weight, the
 * [V, d] vocabulary matrix) is held in 16, 8 or 4 bits, and the plain host reference that packs
 * and unpacks it. Every kernel that reads compact weights is tested against `dequantize` here.
 *   const p = quantize(data, 256, 64, {dtype: 'int4', groupSize: 32});   // data: Float32Array [256 * 64]
 *   const w = dequantize(p);                       // Float32Array [rows * cols]
 *   const block = dequantizeRows(p, 0, 16);        // rows 0..15 only: what host kernels do
 *
 * The encodings (each row packed on its own, little end first, into 32-bit words):
 * - bfloat16: 2 values per word (element 2j in the low half); the top 16 bits of the float32,
 *   rounded to nearest even.
 * - float16: 2 IEEE halves per word, rounded to nearest even.
 * - int8: 4 signed bytes per word; symmetric, one scale per row (output channel):
 *   w = q * scale, scale = max|w| / 127, q in [-127, 127].
 * - int4: 8 nibbles per word, groupwise along the row (groupSize 32, 64 or 128), one float16
 *   scale per group. Without zero points: w = (q - 8) * scale, q in [0, 15]. With zero points:
 *   w = (q - z) * scale, z in [0, 15] (one per group, held as a float). The quantizer picks each
 *   group's scale (and zero) of least squared error among candidates around max|w| / 7
 *   (with zero points: around (max - min) / 15): see fitSymmetric / fitAsymmetric.
 * Scales are rounded to float16 when made, so the scales in memory equal the ones in a file.
 *
 * Shape letters: R rows (output channels), C cols (input features), G groups per row (C / groupSize).
 */
import {f16ToF32, f32ToBf16, f32ToF16} from './half';

export const COMPACT_DTYPES = ['bfloat16', 'float16', 'int8', 'int4'] as const;
export type CompactDtype = (typeof COMPACT_DTYPES)[number];
export const INT4_GROUP_SIZES = [32, 64, 128] as const;

/** What a model's matrices can be held as: float32 variables or one of the compact dtypes. */
export const WEIGHT_DTYPES = ['float32', ...COMPACT_DTYPES] as const;
export type WeightDtype = (typeof WEIGHT_DTYPES)[number];

/**
 * The compact spec for a weight dtype (null for float32), or a one-line error for an unknown
 * dtype or options that do not belong to it. `auto` is resolved by the caller (the checkpoint's own dtype).
 */
export function weightSpec(dtype: string, opts: {groupSize?: number; zeroPoints?: boolean} = {}): CompactSpec | null {
  if (!(WEIGHT_DTYPES as readonly string[]).includes(dtype)) {
    throw new Error(`unknown dtype ${JSON.stringify(dtype)} (expected one of auto, ${WEIGHT_DTYPES.join(', ')})`);
  }
  if (dtype !== 'int4' && (opts.groupSize != null || opts.zeroPoints)) {
    throw new Error(`groupSize and zeroPoints are for int4 weights, not ${dtype}`);
  }
  if (dtype === 'float32') return null;
  if (dtype !== 'int4') return {dtype: dtype as CompactDtype};
  const groupSize = opts.groupSize ?? 64;
  if (!(INT4_GROUP_SIZES as readonly number[]).includes(groupSize)) {
    throw new Error(`int4 group size must be one of ${INT4_GROUP_SIZES.join(', ')}, got ${groupSize}`);
  }
  return {dtype: 'int4', groupSize, zeroPoints: opts.zeroPoints === true};
}

export interface CompactSpec {
  dtype: CompactDtype;
  /** int4 only: values per scale along a row (32, 64 or 128; default 64). */
  groupSize?: number;
  /** int4 only: an offset per group (asymmetric ranges); default false. */
  zeroPoints?: boolean;
}

/** A packed matrix. Words are int32 (tfjs has no uint32 tensors); read them as uint32 bit patterns. */
export interface PackedMatrix {
  dtype: CompactDtype;
  rows: number;
  cols: number;
  /** int4: values per scale; otherwise cols (one "group" per row) for int8, 0 for the 16-bit types. */
  groupSize: number;
  /** [R, C / perWord] words. */
  data: Int32Array;
  /** int8: [R]; int4: [R, G]; null for the 16-bit types. */
  scales: Float32Array | null;
  /** int4 with zero points: [R, G]; else null. */
  zeros: Float32Array | null;
}

/** Values per 32-bit word. */
export function perWord(dtype: CompactDtype): number {
  return dtype === 'int4' ? 8 : dtype === 'int8' ? 4 : 2;
}

/** Bytes a packed [rows, cols] matrix takes in memory, scales and zero points included. */
export function packedBytes(
  dtype: CompactDtype,
  rows: number,
  cols: number,
  groupSize = 64,
  zeroPoints = false,
): number {
  const words = (rows * cols) / perWord(dtype);
  const groups = dtype === 'int4' ? (rows * cols) / groupSize : dtype === 'int8' ? rows : 0;
  return words * 4 + groups * 4 * (zeroPoints && dtype === 'int4' ? 2 : 1);
}

/** Throws a one-line error when `spec` cannot pack a [rows, cols] matrix; returns the group size. */
export function checkSpec(spec: CompactSpec, rows: number, cols: number, what = 'matrix'): number {
  if (!(COMPACT_DTYPES as readonly string[]).includes(spec.dtype)) {
    throw new Error(
      `unknown compact dtype ${JSON.stringify(spec.dtype)} (expected one of ${COMPACT_DTYPES.join(', ')})`,
    );
  }
  const k = perWord(spec.dtype);
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new Error(`${what}: shape [${rows}, ${cols}] is not a matrix`);
  }
  if (cols % k !== 0)
    throw new Error(`${what}: ${spec.dtype} packs ${k} values per word; width ${cols} is not a multiple of ${k}`);
  if (spec.dtype !== 'int4') {
    if (spec.groupSize != null || spec.zeroPoints)
      throw new Error(`${what}: groupSize and zeroPoints are for int4 only`);
    return spec.dtype === 'int8' ? cols : 0;
  }
  const g = spec.groupSize ?? 64;
  if (!(INT4_GROUP_SIZES as readonly number[]).includes(g)) {
    throw new Error(`${what}: int4 group size must be one of ${INT4_GROUP_SIZES.join(', ')}, got ${g}`);
  }
  if (cols % g !== 0) throw new Error(`${what}: group size ${g} does not divide the width ${cols}`);
  return g;
}

const roundF16 = (x: number) => f16ToF32(f32ToF16(Float32Array.of(x)))[0];

/**
 * Packs row-major float32 values [rows, cols]. `plain`: int4 groups by plain max-range rounding
 * instead of the least-squares fit (for random benchmark weights, where only speed matters).
 */
export function quantize(
  values: Float32Array,
  rows: number,
  cols: number,
  spec: CompactSpec,
  opts: {plain?: boolean} = {},
): PackedMatrix {
  const groupSize = checkSpec(spec, rows, cols);
  if (values.length !== rows * cols)
    throw new Error(`quantize: ${values.length} values for a [${rows}, ${cols}] matrix`);
  const k = perWord(spec.dtype);
  const data = new Int32Array((rows * cols) / k);
  if (spec.dtype === 'bfloat16' || spec.dtype === 'float16') {
    const halves = spec.dtype === 'bfloat16' ? f32ToBf16(values) : f32ToF16(values);
    for (let w = 0; w < data.length; w++) data[w] = halves[2 * w] | (halves[2 * w + 1] << 16);
    return {dtype: spec.dtype, rows, cols, groupSize, data, scales: null, zeros: null};
  }
  if (spec.dtype === 'int8') {
    const scales = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let amax = 0;
      for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(values[r * cols + c]));
      const s = roundF16(amax / 127);
      scales[r] = s;
      for (let c = 0; c < cols; c++) {
        const q = s > 0 ? Math.max(-127, Math.min(127, Math.round(values[r * cols + c] / s))) : 0;
        const i = r * cols + c;
        data[i >> 2] |= (q & 0xff) << (8 * (i & 3));
      }
    }
    return {dtype: 'int8', rows, cols, groupSize, data, scales, zeros: null};
  }
  const G = cols / groupSize;
  const scales = new Float32Array(rows * G);
  const zeros = spec.zeroPoints ? new Float32Array(rows * G) : null;
  const q = new Uint8Array(groupSize);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < G; g++) {
      const c0 = r * cols + g * groupSize;
      const x = values.subarray(c0, c0 + groupSize);
      const {s, z} = opts.plain ? plainFit(x, q, zeros != null) : fitGroup(x, q, zeros != null);
      scales[r * G + g] = s;
      if (zeros != null) zeros[r * G + g] = z;
      for (let c = 0; c < groupSize; c++) {
        const i = c0 + c;
        data[i >> 3] |= q[c] << (4 * (i & 7));
      }
    }
  }
  return {dtype: 'int4', rows, cols, groupSize, data, scales, zeros};
}

/**
 * The scale and zero of one int4 group x, its codes [0, 15] written into q: the least-squares
 * fit quantize uses (zero is 8 without zero points).
 */
export function fitGroup(x: Float32Array, q: Uint8Array, zeroPoints: boolean): {s: number; z: number} {
  return zeroPoints ? fitAsymmetric(x, q) : fitSymmetric(x, q);
}

/** Codes of x for scale s and zero z, clamped to [0, 15], into q; returns the squared error. */
function codes(x: Float32Array, s: number, z: number, q: Uint8Array): number {
  let err = 0;
  for (let c = 0; c < x.length; c++) {
    const k = s > 0 ? Math.max(0, Math.min(15, Math.round(x[c] / s) + z)) : z;
    q[c] = k;
    err += (x[c] - (k - z) * s) ** 2;
  }
  return err;
}

/** int4 by plain rounding: s = max|x| / 7 (zero points: range / 15, z = round(-min / s)). */
function plainFit(x: Float32Array, q: Uint8Array, zeroPoints: boolean): {s: number; z: number} {
  let lo = 0,
    hi = 0;
  for (let c = 0; c < x.length; c++) {
    lo = Math.min(lo, x[c]);
    hi = Math.max(hi, x[c]);
  }
  const s = roundF16(zeroPoints ? (hi - lo) / 15 : Math.max(-lo, hi) / 7);
  const z = zeroPoints ? (s > 0 ? Math.max(0, Math.min(15, Math.round(-lo / s))) : 0) : 8;
  codes(x, s, z, q);
  return {s, z};
}

/**
 * int4 without zero points: w = (q - 8) s over the 16 codes [-8, 7]. Candidate scales put the
 * group's largest magnitude at -8 or 7 and at 19 fractions of it; each candidate's codes get the
 * least-squares scale (sum x k / sum k^2), rounded to float16; the one of least squared error wins.
 */
function fitSymmetric(x: Float32Array, q: Uint8Array): {s: number; z: number} {
  let amax = 0,
    at = 0;
  for (let c = 0; c < x.length; c++) {
    if (Math.abs(x[c]) > amax) {
      amax = Math.abs(x[c]);
      at = x[c];
    }
  }
  if (amax === 0) {
    q.fill(8);
    return {s: 0, z: 8};
  }
  let best = {s: roundF16(amax / 7), z: 8};
  let bestErr = codes(x, best.s, 8, q);
  const trial = new Uint8Array(x.length);
  for (const top of at < 0 ? [-8, -7] : [7, 8]) {
    for (let i = 0; i <= 18; i++) {
      const s0 = at / (top * (1 - 0.02 * (i - 4))); // from 8% wider to 28% narrower
      if (!(s0 > 0)) continue;
      codes(x, s0, 8, trial);
      let num = 0,
        den = 0;
      for (let c = 0; c < x.length; c++) {
        const k = trial[c] - 8;
        num += x[c] * k;
        den += k * k;
      }
      const s = den > 0 ? roundF16(num / den) : 0;
      if (!(s > 0)) continue;
      const err = codes(x, s, 8, trial);
      if (err < bestErr) {
        bestErr = err;
        best = {s, z: 8};
      }
    }
  }
  codes(x, best.s, 8, q);
  return best;
}

/**
 * int4 with zero points: w = (q - z) s. Candidate ranges shrink [min(x, 0), max(x, 0)] from
 * either end (7 x 7 fractions); each gives s = range / 15 rounded to float16 and z = round(-lo / s)
 * in [0, 15]; the one of least squared error wins. (Refitting each candidate's scale by least
 * squares lowered the squared error but not the perplexity: bench/results/NOTES.md.)
 */
function fitAsymmetric(x: Float32Array, q: Uint8Array): {s: number; z: number} {
  let lo = 0,
    hi = 0;
  for (let c = 0; c < x.length; c++) {
    lo = Math.min(lo, x[c]);
    hi = Math.max(hi, x[c]);
  }
  if (hi - lo === 0) {
    q.fill(0);
    return {s: 0, z: 0};
  }
  let best = {s: 0, z: 0},
    bestErr = Infinity;
  const trial = new Uint8Array(x.length);
  const consider = (s: number, z: number) => {
    if (!(s > 0)) return;
    const err = codes(x, s, z, trial);
    if (err < bestErr) {
      bestErr = err;
      best = {s, z};
    }
  };
  for (let a = 0; a < 7; a++) {
    for (let b = 0; b < 7; b++) {
      const l = lo * (1 - 0.05 * a),
        h = hi * (1 - 0.05 * b);
      const s0 = roundF16((h - l) / 15);
      if (!(s0 > 0)) continue;
      const z = Math.max(0, Math.min(15, Math.round(-l / s0)));
      consider(s0, z);
    }
  }
  codes(x, best.s, best.z, q);
  return best;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const half = new Uint16Array(1);

/** Element (r, c) of a packed matrix, as float32. The reference every kernel is held to. */
export function valueAt(p: PackedMatrix, r: number, c: number): number {
  const i = r * p.cols + c;
  const word = p.data[Math.floor(i / perWord(p.dtype))] >>> 0;
  switch (p.dtype) {
    case 'bfloat16':
      u32[0] = ((i & 1 ? word >>> 16 : word & 0xffff) << 16) >>> 0;
      return f32[0];
    case 'float16':
      half[0] = i & 1 ? word >>> 16 : word & 0xffff;
      return f16ToF32(half)[0];
    case 'int8': {
      const byte = (word >>> (8 * (i & 3))) & 0xff;
      return (byte >= 128 ? byte - 256 : byte) * p.scales![r];
    }
    case 'int4': {
      const q = (word >>> (4 * (i & 7))) & 0xf;
      const g = r * (p.cols / p.groupSize) + Math.floor(c / p.groupSize);
      return (q - (p.zeros ? p.zeros[g] : 8)) * p.scales![g];
    }
  }
}

/** Rows [r0, r1) as float32 [r1 - r0, cols]: a block, never the whole matrix unless asked. */
export function dequantizeRows(p: PackedMatrix, r0: number, r1: number, out = new Float32Array((r1 - r0) * p.cols)) {
  for (let r = r0; r < r1; r++) {
    const o = (r - r0) * p.cols;
    for (let c = 0; c < p.cols; c++) out[o + c] = valueAt(p, r, c);
  }
  return out;
}

/** The spec a packed matrix was made with (what a CompactParameter holding it must have). */
export function specOf(p: PackedMatrix): CompactSpec {
  return p.dtype === 'int4' ? {dtype: 'int4', groupSize: p.groupSize, zeroPoints: p.zeros != null} : {dtype: p.dtype};
}

/** Whether two specs pack the same words (defaults filled in: int4 group 64, no zero points). */
export function sameSpec(a: CompactSpec, b: CompactSpec): boolean {
  if (a.dtype !== b.dtype) return false;
  if (a.dtype !== 'int4') return true;
  return (a.groupSize ?? 64) === (b.groupSize ?? 64) && (a.zeroPoints === true) === (b.zeroPoints === true);
}

/** Rows [r0, r1) of a packed matrix, sharing its buffers: rows are packed on their own, so this is a view. */
export function packedRows(p: PackedMatrix, r0: number, r1: number): PackedMatrix {
  const wordsPerRow = p.cols / perWord(p.dtype);
  const G = p.dtype === 'int4' ? p.cols / p.groupSize : p.dtype === 'int8' ? 1 : 0;
  return {
    ...p,
    rows: r1 - r0,
    data: p.data.subarray(r0 * wordsPerRow, r1 * wordsPerRow),
    scales: p.scales?.subarray(r0 * G, r1 * G) ?? null,
    zeros: p.zeros?.subarray(r0 * G, r1 * G) ?? null,
  };
}

/** The whole matrix as float32 [rows, cols]. */
export function dequantize(p: PackedMatrix): Float32Array {
  return dequantizeRows(p, 0, p.rows);
}
