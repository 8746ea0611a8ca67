/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
 * counter-based generator, so a draw is a pure function of (key, counter) and any row or step can
 * draw without a state carried from the previous one. The WGSL below is the GPU sampler's; the
 * host function is the same algorithm, the reference the WGSL is tested against (both are checked
 * against Random123's published known-answer vectors).
 *   const [x0] = philox4x32([7, 0, 0, 0], [42, 0]);   // counter (step 7), key (seed 42): four uint32 words
 *   const code = PHILOX_WGSL + 'fn f(c : vec4<u32>, k : vec2<u32>) -> vec4<u32> { return philox(c, k); }';
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const ROUNDS = 10;

/** [hi, lo] of the 64-bit product of two uint32 (exact: each partial product stays below 2^53). */
function mulhilo(a: number, b: number): [number, number] {
  const x = a * (b & 0xffff); // < 2^48
  const y = a * (b >>> 16); // < 2^48
  const yh = Math.floor(y / 65536);
  const rest = (y - yh * 65536) * 65536 + x; // < 2^49
  const hi = (yh + Math.floor(rest / 4294967296)) >>> 0;
  return [hi, Math.imul(a, b) >>> 0];
}

/** Philox4x32 with 10 rounds: counter (4 uint32) and key (2 uint32) to 4 uint32. */
export function philox4x32(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let r = 0; r < ROUNDS; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const [hi0, lo0] = mulhilo(M0, c0);
    const [hi1, lo1] = mulhilo(M1, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** WGSL: `mulhi(a, b)` (high word of a 32x32 product) and `philox(counter, key) -> vec4<u32>`. */
export const PHILOX_WGSL = /* wgsl */ `
fn mulhi(a : u32, b : u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = ((al * bl) >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}
fn philox(counter : vec4<u32>, key : vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0u; r < ${ROUNDS}u; r = r + 1u) {
    if (r > 0u) { k = k + vec2<u32>(0x${W0.toString(16)}u, 0x${W1.toString(16)}u); }
    let hi0 = mulhi(0x${M0.toString(16)}u, c.x);
    let lo0 = 0x${M0.toString(16)}u * c.x;
    let hi1 = mulhi(0x${M1.toString(16)}u, c.z);
    let lo1 = 0x${M1.toString(16)}u * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}
`;
