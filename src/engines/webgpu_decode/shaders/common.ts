/**
 * What the fused decode kernels share: the per-step storage buffer's layout, WGSL float
 * constants, the WGSL math helpers (tanhP, geluT, sigm), the attention kernels' spec, and the
 * binding list of a generated source (what the engine binds named buffers by).
 *   const L = stepLayout(b, config.rotary_dim / 2);   // L.ids, L.pos, L.slot, L.cos, L.sin: word offsets
 *   const names = wgslBindings(COMMON_WGSL + '@group(0) @binding(0) var<storage, read> e : array<f32>;');   // ['e']
 *
 * Every shape is baked into a kernel's source as a constant (one pipeline per distinct shape,
 * made once per model and batch size), so no kernel reads a uniform; what changes per token (ids,
 * positions, the ring slots, RoPE's cos/sin) sits in the one small step buffer written before
 * each submit.
 *
 * Shape letters: B batch rows, H query heads, K key/value heads, HD head dim, ROT rotary dims,
 * S attention ring slots (window + 1).
 */

/** Layout of the step buffer (u32 words): ids, positions, ring slot, then cos and sin tables. */
export interface StepLayout {
  ids: number;
  pos: number;
  slot: number;
  cos: number;
  sin: number;
  words: number;
  half: number;
}

export function stepLayout(B: number, rotaryHalf: number): StepLayout {
  const half = Math.max(1, rotaryHalf);
  const ids = 0,
    pos = B,
    slot = 2 * B,
    cos = 2 * B + 4,
    sin = cos + B * half;
  return {ids, pos, slot, cos, sin, words: sin + B * half, half};
}

/** A float constant in WGSL: the double rounds to the nearest f32, as Math.fround does. */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`not a finite constant: ${x}`);
  return `f32(${x.toPrecision(17)})`;
}

/** WGSL, prepended to kernels that use it. tanhP: tanh with float32 accuracy everywhere (Cephes tanhf); WGSL's
 * builtin may be exp-based and NaN for large |x|. geluT: GeLU, tanh form. sigm: the logistic sigmoid. */
export const COMMON_WGSL = /* wgsl */ `
fn tanhP(x : f32) -> f32 {
  let z = abs(x);
  var r : f32;
  if (z < 0.625) {
    let s = x * x;
    r = ((((-5.70498872745e-3 * s + 2.06390887954e-2) * s - 5.37397155531e-2) * s + 1.33314422036e-1) * s
        - 3.33332819422e-1) * s * z + z;
  } else if (z > 40.0) {
    r = 1.0;
  } else {
    r = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
  }
  return select(r, -r, x < 0.0);
}
fn geluT(x : f32) -> f32 {
  let inner = (x + (x * x * x) * 0.044715) * 0.7978845608028654;
  return (x * 0.5) * (tanhP(inner) + 1.0);
}
fn sigm(x : f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
`;

/** A large negative score standing for 'no slot' in the attention kernels. */
export const NEG_WGSL = '-3.0e38';

/** The RoPE, partial attention and combine kernels' shape (ring of S slots, chunks of CS, T invocations). */
export interface AttnSpec {
  B: number;
  H: number;
  K: number;
  HD: number;
  ROT: number;
  S: number;
  step: StepLayout;
  /** Slots per chunk of the partial kernel. */
  CS: number;
  T: number;
}

export function attnChunks(s: AttnSpec): number {
  return Math.ceil(s.S / s.CS);
}

/** A generated source's storage bindings by name, in @binding order (group 0). */
export function wgslBindings(code: string): string[] {
  const names: string[] = [];
  for (const m of code.matchAll(/@group\(0\) @binding\((\d+)\) var<storage, \w+> (\w+)/g)) {
    if (Number(m[1]) !== names.length) throw new Error(`WGSL bindings out of order at ${m[2]}`);
    names.push(m[2]);
  }
  return names;
}
