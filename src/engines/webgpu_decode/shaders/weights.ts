/**
 * How the engine's kernels read a weight matrix: float32, or packed in 32-bit words as
 * ops/compact/format.ts defines (bfloat16 / float16 two per word, int8 four per word with one
 * scale per row, int4 eight per word with a scale, and optionally a zero point, per group).
 * The WGSL here turns one load of W words into W * perWord / 4 vec4<f32> of the stored values
 * before their scale: what the GEMV and the embedding gather multiply with.
 *   const fmt = weightFormat({dtype: 'int4', groupSize: 64});
 *   const load = slotLoad(fmt, 4);                   // 4 words (32 values) per load: load.type == 'vec4<u32>'
 *   const vecs = load.unpack('wv', 'zp');            // 8 WGSL vec4<f32> expressions of q - zp
 *
 * Shape letters: W words per load, K = W * perWord values per load.
 */
import {type CompactDtype, perWord, type WeightDtype} from '../../../../ops/compact/format';

/** A matrix's storage as the kernels see it (groupSize: int4's values per scale, else 0). */
export interface WeightFormat {
  readonly dtype: WeightDtype;
  readonly groupSize: number;
  readonly zeroPoints: boolean;
}

export const FLOAT32_WEIGHTS: WeightFormat = {dtype: 'float32', groupSize: 0, zeroPoints: false};

export function weightFormat(spec: {dtype: WeightDtype; groupSize?: number; zeroPoints?: boolean}): WeightFormat {
  if (spec.dtype !== 'int4') return {dtype: spec.dtype, groupSize: 0, zeroPoints: false};
  return {dtype: 'int4', groupSize: spec.groupSize ?? 64, zeroPoints: spec.zeroPoints === true};
}

export function sameFormat(a: WeightFormat, b: WeightFormat): boolean {
  return a.dtype === b.dtype && a.groupSize === b.groupSize && a.zeroPoints === b.zeroPoints;
}

/** Values per 32-bit word of storage (float32: 1). */
export function valuesPerWord(fmt: WeightFormat): number {
  return fmt.dtype === 'float32' ? 1 : perWord(fmt.dtype as CompactDtype);
}

/** Whether the format has a scale per row (int8) or per group (int4) buffer, and zero points. */
export function hasScales(fmt: WeightFormat): boolean {
  return fmt.dtype === 'int8' || fmt.dtype === 'int4';
}

/** Bytes a [rows, cols] matrix of this format takes (scales and zero points included). */
export function matrixBytes(fmt: WeightFormat, rows: number, cols: number): number {
  const words = (rows * cols) / valuesPerWord(fmt);
  const scales = fmt.dtype === 'int8' ? rows : fmt.dtype === 'int4' ? (rows * cols) / fmt.groupSize : 0;
  return 4 * (words + scales * (fmt.zeroPoints ? 2 : 1));
}

/** One load of W packed words: its WGSL type and the vec4<f32>s it unpacks to. */
export interface SlotLoad {
  readonly W: number;
  /** Values per load (W * perWord; a multiple of 4). */
  readonly K: number;
  readonly type: string;
  /**
   * WGSL expressions, K / 4 vec4<f32>, of the loaded value `v` (a let of `type`): bfloat16 and
   * float16 the values; int8 q (times the row's scale later); int4 q - zp (zp a WGSL f32
   * expression: 8.0 without zero points), times the group's scale later.
   */
  unpack(v: string, zp: string): string[];
}

/**
 * The load of W words (1, 2 or 4) of a compact format; K must come out a multiple of 4. magic:
 * int8 / int4 become floats by OR-ing their (biased) bits into the mantissa of 2^23 and
 * subtracting it (exact; integer and bit operations only) instead of an int-to-float conversion
 * (a quarter-rate instruction on NVIDIA GPUs).
 */
export function slotLoad(fmt: WeightFormat, W: number, magic = false): SlotLoad {
  const k = valuesPerWord(fmt);
  if (fmt.dtype === 'float32') throw new Error('slotLoad: float32 weights load as vec4<f32>');
  if (![1, 2, 4].includes(W) || (W * k) % 4 !== 0) throw new Error(`slotLoad: ${W} words of ${fmt.dtype}`);
  const type = W === 1 ? 'u32' : `vec${W}<u32>`;
  const word = (v: string, j: number) => (W === 1 ? v : `${v}[${j}]`);
  const unpack = (v: string, zp: string): string[] => {
    const out: string[] = [];
    if (fmt.dtype === 'bfloat16' || fmt.dtype === 'float16') {
      for (let j = 0; j < W; j += 2) {
        const [a, b] = [word(v, j), word(v, j + 1)];
        out.push(
          fmt.dtype === 'bfloat16'
            ? `vec4<f32>(bitcast<f32>(${a} << 16u), bitcast<f32>(${a} & 0xffff0000u), bitcast<f32>(${b} << 16u), bitcast<f32>(${b} & 0xffff0000u))`
            : `vec4<f32>(unpack2x16float(${a}), unpack2x16float(${b}))`,
        );
      }
    } else if (fmt.dtype === 'int8' && magic) {
      for (let j = 0; j < W; j++) {
        // Byte q ^ 0x80 is q + 128 in [0, 255]: 2^23 + q + 128 as a float, minus 2^23 + 128.
        const biased = `((vec4<u32>(${word(v, j)} ^ 0x80808080u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u))`;
        out.push(`(bitcast<vec4<f32>>(${biased} | vec4<u32>(0x4b000000u)) - vec4<f32>(8388736.0))`);
      }
    } else if (fmt.dtype === 'int8') {
      for (let j = 0; j < W; j++) {
        // Byte q of the word, sign-extended: shift it to the top, then arithmetic shift down.
        out.push(
          `vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(${word(v, j)}) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u))`,
        );
      }
    } else if (magic) {
      for (let j = 0; j < W; j++) {
        const w = `vec4<u32>(${word(v, j)})`;
        // Nibble n: 2^23 + n as a float, minus 2^23 (exact), then the zero point.
        for (const sh of ['0u, 4u, 8u, 12u', '16u, 20u, 24u, 28u']) {
          out.push(
            `((bitcast<vec4<f32>>(((${w} >> vec4<u32>(${sh})) & vec4<u32>(15u)) | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0)) - ${zp})`,
          );
        }
      }
    } else {
      for (let j = 0; j < W; j++) {
        const w = `vec4<u32>(${word(v, j)})`;
        out.push(`vec4<f32>((${w} >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - ${zp}`);
        out.push(`vec4<f32>((${w} >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)) - ${zp}`);
      }
    }
    return out;
  };
  return {W, K: W * k, type, unpack};
}

/**
 * WGSL of one stored value, before its scale: `fn NAME(w : u32, q : u32) -> f32`, the q-th value
 * of the word w (int4: q - zp with zp an f32 argument too). For one-value-per-thread kernels.
 */
export function valueFn(fmt: WeightFormat, name: string): string {
  switch (fmt.dtype) {
    case 'bfloat16':
      return `fn ${name}(w : u32, q : u32, zp : f32) -> f32 { return bitcast<f32>((w >> (16u * q)) << 16u); }`;
    case 'float16':
      return `fn ${name}(w : u32, q : u32, zp : f32) -> f32 { return unpack2x16float(w)[q]; }`;
    case 'int8':
      return `fn ${name}(w : u32, q : u32, zp : f32) -> f32 { return f32(bitcast<i32>(w << (24u - 8u * q)) >> 24u); }`;
    case 'int4':
      return `fn ${name}(w : u32, q : u32, zp : f32) -> f32 { return f32((w >> (4u * q)) & 0xfu) - zp; }`;
    default:
      throw new Error('valueFn: float32 weights are read directly');
  }
}
