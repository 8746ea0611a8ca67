/**
 * 16-bit floats as stored in checkpoints and compact weights: IEEE half (float16) and bfloat16
 * (the top half of a float32), to and from float32 bit patterns held in Uint16Arrays.
 *   const h = f32ToF16(Float32Array.of(1, -2.5));   const back = f16ToF32(h);   // exact for these
 *   const b = f32ToBf16(Float32Array.of(Math.PI));  const pi = bf16ToF32(b)[0];    // 3.140625
 *
 * Narrowing rounds to nearest even (as torch does); widening is exact.
 */

/** bfloat16 bit patterns to float32: bf16 is the top half of a float32, so this is exact. */
export function bf16ToF32(u16: Uint16Array): Float32Array {
  const bits = new Uint32Array(u16.length);
  for (let i = 0; i < u16.length; i++) bits[i] = u16[i] << 16;
  return new Float32Array(bits.buffer);
}

/**
 * `out` (n floats) holds n 16-bit values in its upper half (bytes 2n..4n); widens them to float32
 * in place. Front to back is safe: element i is read before its 4 bytes are written, and those
 * bytes (4i..4i+3) lie below every later element's (2n + 2j, j > i).
 */
export function widenBf16InPlace(out: Float32Array): Float32Array {
  const n = out.length;
  const src = new Uint16Array(out.buffer, out.byteOffset + 2 * n, n);
  const dst = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
  return out;
}

/** As widenBf16InPlace, for IEEE half values. */
export function widenF16InPlace(out: Float32Array): Float32Array {
  const n = out.length;
  f16Widen(new Uint16Array(out.buffer, out.byteOffset + 2 * n, n), out);
  return out;
}

/** IEEE half bit patterns to float32, exactly, subnormals, infinities and NaN included. */
export function f16ToF32(u16: Uint16Array): Float32Array {
  return f16Widen(u16, new Float32Array(u16.length));
}

/** u16 -> out, element by element (each element read before it is written: safe in place). */
function f16Widen(u16: Uint16Array, out: Float32Array): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < u16.length; i++) {
    const h = u16[i];
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // Zero and subnormals are mant * 2^-24, which float32 holds exactly (as a normal number).
      out[i] = (sign ? -mant : mant) * 2 ** -24;
    } else if (exp === 31) {
      bits[i] = sign | 0x7f800000 | (mant << 13);
    } else {
      bits[i] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
  }
  return out;
}

/** float32 to bfloat16 bit patterns, rounding to nearest even (as torch does). */
export function f32ToBf16(f32: Float32Array): Uint16Array {
  const bits = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < f32.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) {
      // Truncation could drop every mantissa bit of a NaN and leave an infinity; keep it quiet NaN.
      out[i] = (b >>> 16) | 0x0040;
    } else {
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** float32 -> IEEE half, round to nearest even (overflow to inf). */
export function f32ToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0],
      sign = (x >>> 16) & 0x8000,
      exp = (x >>> 23) & 0xff,
      man = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (man ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = man | 0x800000,
        shift = 14 - e;
      let h = m >>> shift;
      const rem = m & ((1 << shift) - 1),
        half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (man >>> 13);
    const rem = man & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into the exponent: still right
    out[i] = sign | h;
  }
  return out;
}
