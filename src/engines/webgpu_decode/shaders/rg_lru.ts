/**
 * The RG-LRU kernel: the conv1d step (with its bias and history) + the block-diagonal RG-LRU
 * gates + recurrence + state update + h * gelu(y), per head and block of rows, for one token of B rows.
 *   import {stepLayout} from './common';
 *   const {lru_width: E, num_attention_heads: H, conv1d_width: W, rotary_dim: ROT} = config;
 *   const spec = {B: 8, E, H, W, CC: 16, JS: 8, RB: 4, U: 4, step: stepLayout(8, ROT / 2)};
 *   const code = rgLruSource(spec);   // dispatched over rgLruGrid(spec)
 *
 * Shape letters: B batch rows, E lru_width, H heads, W conv1d_width, BW = E / H channels per
 * head, CC channels per workgroup, JS input slices per channel, RB rows per workgroup, U loop
 * trips unrolled (weight loads in flight).
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
   * shorter dependent chains: this kernel is latency-bound at decode sizes. The only choice that
   * changes the order in which a row's gate sums are added.
   */
  JS?: number;
  /**
   * Rows per workgroup (default and at most B): the grid's third dimension runs over the
   * ceil(B / RB) blocks of rows. Fewer rows, less workgroup memory and more workgroups.
   */
  RB?: number;
  /** Trips of the gate loop unrolled, their weight loads issued together (default 1). */
  U?: number;
}

/** Rows per workgroup: RB, at most B. */
export function rgLruRows(s: RgLruSpec): number {
  return Math.max(1, Math.min(s.RB ?? s.B, s.B));
}

/** Workgroup memory of the RG-LRU kernel, bytes: the conv outputs of a head's RB rows and the slices' partial sums. */
export function rgLruSharedBytes(s: RgLruSpec): number {
  const JS = s.JS ?? 1,
    RB = rgLruRows(s);
  return 4 * (RB * (s.E / s.H) + (JS > 1 ? JS * s.CC * 2 * RB : 0));
}

/** Workgroups of the RG-LRU kernel: (heads, channel chunks per head, row blocks). */
export function rgLruGrid(s: RgLruSpec): [number, number, number] {
  return [s.H, Math.ceil(s.E / s.H / s.CC), Math.ceil(s.B / rgLruRows(s))];
}

export type RgLruBinding = 'uy' | 'pk' | 'wx' | 'wa' | 'st' | 'o' | 'step';

/**
 * Bindings: uy [B, 2E] (linear_x(x) + b | gelu(linear_y(x) + b)), pk (conv weight [E, W] | conv
 * bias [E] | input gate bias [E] | recurrent gate bias [E] | recurrent_param [E]), wx, wa
 * [H, E/H, E/H], st (conv inputs ring [B, W, E] | h [B, E]), o [B, E], step.
 *
 * The conv inputs live in a ring of W slots: this step's input goes to slot cs (step word
 * slot + 1), the W-1 before it are slots cs+1, ..., cs+W-1 (mod W), oldest first. A workgroup
 * (head h, channel chunk, row block r) needs the convolution of all E/H channels of its head for
 * its rows and recomputes it; it writes the state of its own channels and rows only (each state
 * element has one writer), and of the ring only slot cs, which no workgroup reads in this step,
 * unless the row starts a document (position 0): then the conv skips the history taps (their
 * values, read as the loads are issued, are dropped) and the row's history is cleared.
 *
 * A row's arithmetic is the same whatever B, RB, CC and U: its gate sums add slice js's inputs
 * j = js, js + JS, ... in order, then the slices 0, 1, ..., JS - 1 in order.
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
  const JS = s.JS ?? 1,
    NT = CC * JS,
    RB = rgLruRows(s),
    U = Math.max(1, s.U ?? 1),
    N = RB * BW;
  const ring = (b: string, slot: string) => `(${b} * ${W}u + ${slot}) * ${E}u + ch`;

  // The conv of channel c for the block's rows: its taps loaded once, then each row (clamped to a
  // row below B so that every load is in bounds; what a row past B gets is never used).
  const convRow = (r: number) => {
    const lines = [
      `{ let b = min(r0 + ${r}u, ${B - 1}u);`,
      `  let reset = step[${s.step.pos}u + b] == 0u;`,
      `  var y = cb;`,
    ];
    for (let t = 0; t < WM1; t++) {
      lines.push(`  y = select(y + w${t} * st[${ring('b', `((cs + ${1 + t}u) % ${W}u)`)}], y, reset);`);
    }
    lines.push(`  y = y + w${WM1} * uy[b * ${2 * E}u + ch];`, `  cv[${r * BW}u + c] = y; }`);
    return lines.join('\n      ');
  };
  const taps = Array.from({length: W}, (_, t) => `let w${t} = pk[ch * ${W}u + ${t}u];`).join(' ');

  const acc = (u: number) =>
    Array.from(
      {length: RB},
      (_, r) =>
        `gx${r} = gx${r} + cv[${r * BW}u + j + ${u * JS}u] * wx${u}; ga${r} = ga${r} + cv[${r * BW}u + j + ${u * JS}u] * wa${u};`,
    ).join('\n        ');
  const loads = Array.from(
    {length: U},
    (_, u) => `let wx${u} = wx[wi + ${u * JS * BW}u]; let wa${u} = wa[wi + ${u * JS * BW}u];`,
  ).join('\n      ');
  // Slices' partial sums: red[(js * RB + r) * CC + cl] for x, the same + RED for a.
  const RED = JS * RB * CC;
  const part = Array.from(
    {length: RB},
    (_, r) =>
      `red[(js * ${RB}u + ${r}u) * ${CC}u + cl] = gx${r}; red[${RED}u + (js * ${RB}u + ${r}u) * ${CC}u + cl] = ga${r};`,
  );
  const fin = Array.from(
    {length: RB},
    (_, r) => `if (r0 + ${r}u < ${B}u) { update(r0 + ${r}u, ${r}u, ch, c, gx${r}, ga${r}, cs); }`,
  );
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> uy : array<f32>;
@group(0) @binding(1) var<storage, read> pk : array<f32>;
@group(0) @binding(2) var<storage, read> wx : array<f32>;
@group(0) @binding(3) var<storage, read> wa : array<f32>;
@group(0) @binding(4) var<storage, read_write> st : array<f32>;
@group(0) @binding(5) var<storage, read_write> o : array<f32>;
@group(0) @binding(6) var<storage, read> step : array<u32>;
var<workgroup> cv : array<f32, ${N}>;
${JS > 1 ? `var<workgroup> red : array<f32, ${2 * RED}>;` : ''}

fn softplusT(x : f32) -> f32 {
  // tfjs's: exp(x) below log(eps) + 2, x above -(log(eps) + 2), log(1 + exp(x)) between.
  let th = -13.942385152878742;
  if (x > -th) { return x; }
  if (x < th) { return exp(x); }
  return log(1.0 + exp(x));
}

fn update(b : u32, r : u32, ch : u32, c : u32, gxIn : f32, gaIn : f32, cs : u32) {
  let reset = step[${s.step.pos}u + b] == 0u;
  let gx = sigm(gxIn + pk[${BX}u + ch]);
  let ga = sigm(gaIn + pk[${BA}u + ch]);
  let logA = (ga * softplusT(pk[${RP}u + ch])) * -8.0;
  var a = exp(logA);
  var mult = sqrt(1.0 - exp(logA * 2.0));
  if (reset) { a = 0.0; mult = 1.0; }
  let xn = (cv[r * ${BW}u + c] * gx) * mult;
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
  let r0 = wid.z * ${RB}u;
  let cs = step[${s.step.slot + 1}u];
  for (var c = t; c < ${BW}u; c = c + ${NT}u) {
    let ch = h * ${BW}u + c;
    ${taps}
    let cb = pk[${CB}u + ch];
    ${Array.from({length: RB}, (_, r) => convRow(r)).join('\n    ')}
  }
  workgroupBarrier();
  let cl = t % ${CC}u;
  let js = t / ${CC}u;
  let c = wid.y * ${CC}u + cl;
  let ch = h * ${BW}u + c;
  ${Array.from({length: RB}, (_, r) => `var gx${r} = 0.0; var ga${r} = 0.0;`).join(' ')}
  if (c < ${BW}u) {
    // Slice js of the inputs: j = js, js + JS, ... (consecutive c read consecutive weights),
    // ${U} trips at a time, then one at a time.
    var j = js;${
      U > 1
        ? `
    for (; j + ${(U - 1) * JS}u < ${BW}u; j = j + ${U * JS}u) {
      let wi = (h * ${BW}u + j) * ${BW}u + c;
      ${loads}
      ${Array.from({length: U}, (_, u) => acc(u)).join('\n        ')}
    }`
        : ''
    }
    for (; j < ${BW}u; j = j + ${JS}u) {
      let wi = (h * ${BW}u + j) * ${BW}u + c;
      let wx0 = wx[wi]; let wa0 = wa[wi];
      ${acc(0)}
    }
  }${
    JS > 1
      ? `
  ${part.join('\n  ')}
  workgroupBarrier();
  // The block's (row, channel) pairs shared out: each sums its slices 0, 1, ..., JS - 1 in order.
  for (var p = t; p < ${RB * CC}u; p = p + ${NT}u) {
    let r = p / ${CC}u;
    let cp = wid.y * ${CC}u + p % ${CC}u;
    if (cp < ${BW}u && r0 + r < ${B}u) {
      var gx = red[r * ${CC}u + p % ${CC}u];
      var ga = red[${RED}u + r * ${CC}u + p % ${CC}u];
      for (var q = 1u; q < ${JS}u; q = q + 1u) {
        gx = gx + red[(q * ${RB}u + r) * ${CC}u + p % ${CC}u];
        ga = ga + red[${RED}u + (q * ${RB}u + r) * ${CC}u + p % ${CC}u];
      }
      update(r0 + r, r, h * ${BW}u + cp, cp, gx, ga, cs);
    }
  }`
      : `
  if (c >= ${BW}u) { return; }
  ${fin.join('\n  ')}`
  }
}`;
}
