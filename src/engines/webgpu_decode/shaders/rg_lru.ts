/**
 * The RG-LRU kernel: the conv1d step (with its bias and history) + the block-diagonal RG-LRU
 * gates + recurrence + state update + h * gelu(y), per head, for one token of B rows.
 *   import {stepLayout} from './common';
 *   const {lru_width: E, num_attention_heads: H, conv1d_width: W, rotary_dim: ROT} = config;
 *   const spec = {B: 1, E, H, W, CC: 32, JS: 8, step: stepLayout(1, ROT / 2)};
 *   const code = rgLruSource(spec);   // dispatched over rgLruGrid(spec)
 *
 * Shape letters: B batch rows, E lru_width, H heads, W conv1d_width, BW = E / H channels per
 * head, CC channels per workgroup, JS input slices per channel.
 */
import {COMMON_WGSL, StepLayout} from './common';

export interface RgLruSpec {
  B: number;
  E: number;
  H: number;
  W: number;
  step: StepLayout;
  /** Channels per workgroup (a workgroup computes the gates of CC channels of one head). */
  CC: number;
  /**
   * Slices of the gates' inputs per channel (default 1): a workgroup has CC x JS invocations, each
   * summing E/H/JS products per gate, and the slices are added in workgroup memory. More slices,
   * shorter dependent chains: this kernel is latency-bound at decode sizes.
   */
  JS?: number;
}

/** Workgroup memory of the RG-LRU kernel, bytes: the conv outputs of a head and the slices' partial sums. */
export function rgLruSharedBytes(s: RgLruSpec): number {
  const JS = s.JS ?? 1;
  return 4 * (s.B * (s.E / s.H) + (JS > 1 ? JS * s.CC * 2 * s.B : 0));
}

/** Workgroups of the RG-LRU kernel: (heads, channel chunks per head). */
export function rgLruGrid(s: RgLruSpec): [number, number, number] {
  return [s.H, Math.ceil(s.E / s.H / s.CC), 1];
}

export type RgLruBinding = 'uy' | 'pk' | 'wx' | 'wa' | 'st' | 'o' | 'step';

/**
 * Bindings: uy [B, 2E] (linear_x(x) + b | gelu(linear_y(x) + b)), pk (conv weight [E, W] | conv
 * bias [E] | input gate bias [E] | recurrent gate bias [E] | recurrent_param [E]), wx, wa
 * [H, E/H, E/H], st (conv inputs ring [B, W, E] | h [B, E]), o [B, E], step.
 *
 * The conv inputs live in a ring of W slots: this step's input goes to slot cs (step word
 * slot + 1), the W-1 before it are slots cs+1, ..., cs+W-1 (mod W), oldest first. A workgroup
 * needs the convolution of all E/H channels of its head for the gates and recomputes it; it
 * writes only slot cs of its own channels, which no workgroup reads in this step, so workgroups
 * never race. A document start (position 0) skips the history taps and clears the row's history.
 */
export function rgLruSource(s: RgLruSpec): string {
  const {B, E, H, W, CC} = s;
  const BW = E / H,
    WM1 = W - 1;
  const CB = E * W,
    BX = CB + E,
    BA = BX + E,
    RP = BA + E,
    HOFF = B * W * E;
  const ring = (b: string, slot: string) => `(${b} * ${W}u + ${slot}) * ${E}u + ch`;
  const taps: string[] = [];
  for (let k = 0; k < WM1; k++) {
    taps.push(`if (!reset) { y = y + pk[ch * ${W}u + ${k}u] * st[${ring('b', `((cs + ${1 + k}u) % ${W}u)`)}]; }`);
  }
  const JS = s.JS ?? 1,
    NT = CC * JS;
  const acc: string[] = [],
    fin: string[] = [],
    part: string[] = [],
    sum: string[] = [];
  for (let b = 0; b < B; b++) {
    acc.push(`gx${b} = gx${b} + cv[${b * BW}u + j] * wxv; ga${b} = ga${b} + cv[${b * BW}u + j] * wav;`);
    fin.push(`update(${b}u, ch, c, gx${b}, ga${b}, cs);`);
    // Partial sums: red[((js * CC + cl) * B + b) * 2 + {0: x, 1: a}].
    const pi = `((js * ${CC}u + cl) * ${B}u + ${b}u) * 2u`,
      qi = `((q * ${CC}u + cl) * ${B}u + ${b}u) * 2u`;
    part.push(`red[${pi}] = gx${b}; red[${pi} + 1u] = ga${b};`);
    sum.push(`gx${b} = gx${b} + red[${qi}]; ga${b} = ga${b} + red[${qi} + 1u];`);
  }
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> uy : array<f32>;
@group(0) @binding(1) var<storage, read> pk : array<f32>;
@group(0) @binding(2) var<storage, read> wx : array<f32>;
@group(0) @binding(3) var<storage, read> wa : array<f32>;
@group(0) @binding(4) var<storage, read_write> st : array<f32>;
@group(0) @binding(5) var<storage, read_write> o : array<f32>;
@group(0) @binding(6) var<storage, read> step : array<u32>;
var<workgroup> cv : array<f32, ${B * BW}>;
${JS > 1 ? `var<workgroup> red : array<f32, ${JS * CC * 2 * B}>;` : ''}

fn softplusT(x : f32) -> f32 {
  // tfjs's: exp(x) below log(eps) + 2, x above -(log(eps) + 2), log(1 + exp(x)) between.
  let th = -13.942385152878742;
  if (x > -th) { return x; }
  if (x < th) { return exp(x); }
  return log(1.0 + exp(x));
}

fn update(b : u32, ch : u32, c : u32, gxIn : f32, gaIn : f32, cs : u32) {
  let reset = step[${s.step.pos}u + b] == 0u;
  let gx = sigm(gxIn + pk[${BX}u + ch]);
  let ga = sigm(gaIn + pk[${BA}u + ch]);
  let logA = (ga * softplusT(pk[${RP}u + ch])) * -8.0;
  var a = exp(logA);
  var mult = sqrt(1.0 - exp(logA * 2.0));
  if (reset) { a = 0.0; mult = 1.0; }
  let xn = (cv[b * ${BW}u + c] * gx) * mult;
  let hn = a * st[${HOFF}u + b * ${E}u + ch] + xn;
  st[${HOFF}u + b * ${E}u + ch] = hn;
  o[b * ${E}u + ch] = hn * uy[b * ${2 * E}u + ${E}u + ch];
  for (var k = 0u; k < ${W}u; k = k + 1u) {
    if (k == cs) {
      st[${ring('b', 'k')}] = uy[b * ${2 * E}u + ch];
    } else if (reset) {
      st[${ring('b', 'k')}] = 0.0;
    }
  }
}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let h = wid.x;
  let cs = step[${s.step.slot + 1}u];
  for (var idx = t; idx < ${B * BW}u; idx = idx + ${NT}u) {
    let b = idx / ${BW}u;
    let ch = h * ${BW}u + idx % ${BW}u;
    let reset = step[${s.step.pos}u + b] == 0u;
    let u = uy[b * ${2 * E}u + ch];
    var y = pk[${CB}u + ch];
    ${taps.join('\n    ')}
    y = y + pk[ch * ${W}u + ${WM1}u] * u;
    cv[idx] = y;
  }
  workgroupBarrier();
  let cl = t % ${CC}u;
  let js = t / ${CC}u;
  let c = wid.y * ${CC}u + cl;
  let ch = h * ${BW}u + c;
  ${Array.from({length: B}, (_, b) => `var gx${b} = 0.0; var ga${b} = 0.0;`).join(' ')}
  if (c < ${BW}u) {
    // Slice js of the inputs: j = js, js + JS, ... (consecutive c read consecutive weights).
    for (var j = js; j < ${BW}u; j = j + ${JS}u) {
      let wi = (h * ${BW}u + j) * ${BW}u + c;
      let wxv = wx[wi];
      let wav = wa[wi];
      ${acc.join('\n      ')}
    }
  }${
    JS > 1
      ? `
  ${part.join('\n  ')}
  workgroupBarrier();
  if (js != 0u) { return; }
  for (var q = 1u; q < ${JS}u; q = q + 1u) {
    ${sum.join('\n    ')}
  }`
      : ''
  }
  if (c >= ${BW}u) { return; }
  ${fin.join('\n  ')}
}`;
}
