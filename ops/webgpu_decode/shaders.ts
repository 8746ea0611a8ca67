/**
 * WGSL sources of the fused decode engine (ops/webgpu_decode/engine.ts). Every shape is baked
 * into the source as a constant (one pipeline per distinct shape, made once per model and batch
 * size), so no kernel reads a uniform; what changes per token (ids, positions, the attention
 * ring's slot, RoPE's cos/sin) sits in one small "step" storage buffer written before each submit.
 *
 * Kernels (b = batch rows, all float32):
 *   gemvSource     y = [rmsnorm](x) W^T (+ bias), W in PyTorch's [out, in] layout, for 1..16 rows:
 *                  epilogues store / gelu / residual add (in place) / GeGLU (gate, up) / soft cap
 *   rgLruSource    conv1d step (with its bias and history) + RG-LRU gates (block-diagonal) +
 *                  recurrence + state update + (h * gelu(y)), one workgroup per head
 *   ropeSource     RoPE on q and the new k, k/v into the ring slot, validity of the slots
 *   attnPartialSource / attnCombineSource
 *                  single-query multi-query attention over the ring in chunks, then the softmax
 *                  merge of the chunks (split-K, "flash decoding")
 *   embedSource    x = embedding[id] * scale for ids inside one piece of the vocabulary matrix
 */

/** Layout of the step buffer (u32 words): ids, positions, ring slot, then cos and sin tables. */
export interface StepLayout { ids: number; pos: number; slot: number; cos: number; sin: number; words: number; half: number }

export function stepLayout(B: number, rotaryHalf: number): StepLayout {
  const half = Math.max(1, rotaryHalf);
  const ids = 0, pos = B, slot = 2 * B, cos = 2 * B + 4, sin = cos + B * half;
  return {ids, pos, slot, cos, sin, words: sin + B * half, half};
}

/** A float constant in WGSL: the double rounds to the nearest f32, as Math.fround does. */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`not a finite constant: ${x}`);
  return `f32(${x.toPrecision(17)})`;
}

/** tanh with float32 accuracy everywhere (Cephes tanhf); WGSL's builtin may be exp-based and NaN for large |x|. */
const COMMON = /* wgsl */ `
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

export type GemvMode = 'store' | 'residual' | 'geglu' | 'softcap';

export interface GemvSpec {
  B: number;
  IN: number;
  /** Rows of each weight segment (store: several matrices side by side in the output; geglu: [m, m]). */
  segments: number[];
  /** Per segment: apply GeLU (tanh) after the bias (store mode only). */
  gelu?: boolean[];
  mode: GemvMode;
  /** Fused RMSNorm of the input with (1 + g) (binding 'g'). */
  norm: boolean;
  eps?: number;
  /** A bias buffer: store/residual: one value per output row; geglu: gate biases then up biases. */
  bias: boolean;
  /** Output row stride (floats) and column offset. */
  outStride: number;
  outOffset?: number;
  cap?: number;
  /** Rows per workgroup, threads per workgroup, strides per loop trip (tuning). */
  R: number;
  T: number;
  U?: number;
}

/** Bindings in order: x, [g], w0..w(S-1), [bias], out. */
export function gemvBindings(s: GemvSpec): string[] {
  return ['x', ...(s.norm ? ['g'] : []), ...s.segments.map((_, i) => `w${i}`), ...(s.bias ? ['bias'] : []), 'out'];
}

/** Output rows the kernel covers (geglu: m). */
export function gemvRows(s: GemvSpec): number {
  return s.mode === 'geglu' ? s.segments[0] : s.segments.reduce((a, b) => a + b, 0);
}

export function gemvSource(s: GemvSpec): string {
  const {B, IN, R, T, mode} = s;
  const vec = IN % 4 === 0;
  const N = vec ? IN / 4 : IN;                     // vectors per input row
  const V = vec ? 'vec4<f32>' : 'f32';
  const dotv = vec ? 'dot' : 'mulf';
  const P = mode === 'geglu' ? 2 : 1;
  const NACC = R * P * B;
  const NV = NACC + (s.norm ? B : 0);
  const rows = gemvRows(s);
  const nwg = rows / R;
  if (!Number.isInteger(nwg)) throw new Error(`gemv: R=${R} does not divide ${rows}`);
  const binds = gemvBindings(s);
  const decl = binds.map((name, i) => {
    const ty = name === 'x' || name === 'g' || name.startsWith('w') ? `array<${V}>` : 'array<f32>';
    const access = name === 'out' ? 'read_write' : 'read';
    return `@group(0) @binding(${i}) var<storage, ${access}> ${name} : ${ty};`;
  }).join('\n');

  // The main loop for one weight segment (P = 1) or the gate/up pair (P = 2).
  // The main loop for one weight segment (P = 1) or the gate/up pair (P = 2): U strides of T
  // vectors per trip (all loads first, so that R * P * U weight loads are in flight), then a tail.
  const U = s.U ?? 1;
  const full = Math.floor(N / (T * U)) * T * U;
  const loop = (ws: string[], rowBase: string) => {
    const lines: string[] = [];
    const trip = (u: number, i: string) => {
      const L: string[] = [];
      if (s.norm) L.push(`  let gv${u} = ${V}(1.0) + g[${i}];`);
      for (let b = 0; b < B; b++) L.push(`  let xr${b}_${u} = x[${b * N}u + ${i}];`);
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < P; p++) L.push(`  let w${r}_${p}_${u} = ${ws[p]}[(${rowBase} + ${r}u) * ${N}u + ${i}];`);
      }
      return L;
    };
    const math = (u: number) => {
      const L: string[] = [];
      for (let b = 0; b < B; b++) {
        if (s.norm) {
          L.push(`  sq${b} = sq${b} + ${dotv}(xr${b}_${u}, xr${b}_${u});`);
          L.push(`  let xv${b}_${u} = xr${b}_${u} * gv${u};`);
        } else {
          L.push(`  let xv${b}_${u} = xr${b}_${u};`);
        }
      }
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < P; p++) {
          for (let b = 0; b < B; b++) {
            const v = (r * P + p) * B + b;
            L.push(`  acc${v} = acc${v} + ${dotv}(w${r}_${p}_${u}, xv${b}_${u});`);
          }
        }
      }
      return L;
    };
    if (full > 0) {
      lines.push(`for (var i = t; i < ${full}u; i = i + ${T * U}u) {`);
      for (let u = 0; u < U; u++) lines.push(...trip(u, u === 0 ? 'i' : `i + ${u * T}u`));
      for (let u = 0; u < U; u++) lines.push(...math(u));
      lines.push('}');
    }
    if (full < N) {
      lines.push(`for (var i = ${full}u + t; i < ${N}u; i = i + ${T}u) {`);
      lines.push(...trip(0, 'i'), ...math(0));
      lines.push('}');
    }
    return lines.join('\n');
  };

  let body: string;
  if (mode === 'geglu') {
    body = loop(['w0', 'w1'], 'row0');
  } else {
    // Segments: R divides each, so a workgroup lies in one.
    const parts: string[] = [];
    let start = 0;
    s.segments.forEach((n, k) => {
      const cond = k === s.segments.length - 1 ? '' : `if (row0 < ${start + n}u) `;
      parts.push(`${k > 0 ? 'else ' : ''}${cond}{\n${loop([`w${k}`], `(row0 - ${start}u)`)}\n}`);
      start += n;
    });
    body = parts.join('\n');
  }

  let fin: string;
  const outIdx = `b * ${s.outStride}u + ${s.outOffset ?? 0}u + row`;
  const rsb = s.norm ? `let rs = 1.0 / sqrt(red[(${NACC}u + b) * ${T}u] / ${f32(IN)} + ${f32(s.eps ?? 1e-6)});` : 'let rs = 1.0;';
  if (mode === 'geglu') {
    const m = s.segments[0];
    fin = `
    let r = t / ${B}u; let b = t % ${B}u; let row = row0 + r;
    ${rsb}
    var gt = red[((r * 2u) * ${B}u + b) * ${T}u] * rs;
    var up = red[((r * 2u + 1u) * ${B}u + b) * ${T}u] * rs;
    ${s.bias ? `gt = gt + bias[row]; up = up + bias[${m}u + row];` : ''}
    out[${outIdx}] = geluT(gt) * up;`;
  } else {
    let post = '';
    if (mode === 'store' && s.gelu?.some((x) => x)) {
      let start = 0;
      const conds: string[] = [];
      s.segments.forEach((n, k) => {
        if (s.gelu![k]) conds.push(`(row >= ${start}u && row < ${start + n}u)`);
        start += n;
      });
      if (conds.length > 0) post = `if (${conds.join(' || ')}) { v = geluT(v); }`;
    }
    const write = mode === 'residual' ? `out[${outIdx}] = v + out[${outIdx}];`
      : mode === 'softcap' ? `out[${outIdx}] = tanhP(v / ${f32(s.cap!)}) * ${f32(s.cap!)};`
      : `out[${outIdx}] = v;`;
    fin = `
    let r = t / ${B}u; let b = t % ${B}u; let row = row0 + r;
    ${rsb}
    var v = red[(r * ${B}u + b) * ${T}u] * rs;
    ${s.bias ? 'v = v + bias[row];' : ''}
    ${post}
    ${write}`;
  }

  return `
${COMMON}
fn mulf(a : f32, b : f32) -> f32 { return a * b; }
${decl}
var<workgroup> red : array<f32, ${NV * T}>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nw : vec3<u32>,
        @builtin(local_invocation_index) t : u32) {
  let wg = wid.x + wid.y * nw.x;
  if (wg >= ${nwg}u) { return; }
  let row0 = wg * ${R}u;
  ${Array.from({length: NACC}, (_, v) => `var acc${v} = 0.0;`).join(' ')}
  ${Array.from({length: B}, (_, b) => `var sq${b} = 0.0;`).join(' ')}
${body}
  ${Array.from({length: NACC}, (_, v) => `red[${v * T}u + t] = acc${v};`).join(' ')}
  ${s.norm ? Array.from({length: B}, (_, b) => `red[${(NACC + b) * T}u + t] = sq${b};`).join(' ') : ''}
  workgroupBarrier();
  for (var st = ${T / 2}u; st > 0u; st = st >> 1u) {
    if (t < st) {
      for (var v = 0u; v < ${NV}u; v = v + 1u) { red[v * ${T}u + t] = red[v * ${T}u + t] + red[v * ${T}u + t + st]; }
    }
    workgroupBarrier();
  }
  if (t < ${R * B}u) {${fin}
  }
}`;
}

export interface RgLruSpec {
  B: number; E: number; H: number; W: number; step: StepLayout;
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
  const BW = E / H, WM1 = W - 1;
  const CB = E * W, BX = CB + E, BA = BX + E, RP = BA + E, HOFF = B * W * E;
  const ring = (b: string, slot: string) => `(${b} * ${W}u + ${slot}) * ${E}u + ch`;
  const taps: string[] = [];
  for (let k = 0; k < WM1; k++) {
    taps.push(`if (!reset) { y = y + pk[ch * ${W}u + ${k}u] * st[${ring('b', `((cs + ${1 + k}u) % ${W}u)`)}]; }`);
  }
  const JS = s.JS ?? 1, NT = CC * JS;
  const acc: string[] = [], fin: string[] = [], part: string[] = [], sum: string[] = [];
  for (let b = 0; b < B; b++) {
    acc.push(`gx${b} = gx${b} + cv[${b * BW}u + j] * wxv; ga${b} = ga${b} + cv[${b * BW}u + j] * wav;`);
    fin.push(`update(${b}u, ch, c, gx${b}, ga${b}, cs);`);
    // Partial sums: red[((js * CC + cl) * B + b) * 2 + {0: x, 1: a}].
    part.push(`red[((js * ${CC}u + cl) * ${B}u + ${b}u) * 2u] = gx${b}; red[((js * ${CC}u + cl) * ${B}u + ${b}u) * 2u + 1u] = ga${b};`);
    sum.push(`gx${b} = gx${b} + red[((q * ${CC}u + cl) * ${B}u + ${b}u) * 2u]; ga${b} = ga${b} + red[((q * ${CC}u + cl) * ${B}u + ${b}u) * 2u + 1u];`);
  }
  return `
${COMMON}
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
  }${JS > 1 ? `
  ${part.join('\n  ')}
  workgroupBarrier();
  if (js != 0u) { return; }
  for (var q = 1u; q < ${JS}u; q = q + 1u) {
    ${sum.join('\n    ')}
  }` : ''}
  if (c >= ${BW}u) { return; }
  ${fin.join('\n  ')}
}`;
}

export interface AttnSpec {
  B: number; H: number; K: number; HD: number; ROT: number; S: number; step: StepLayout;
  /** Slots per chunk of the partial kernel. */
  CS: number; T: number;
}

export function attnChunks(s: AttnSpec): number { return Math.ceil(s.S / s.CS); }

/** Bindings: qkv [B, (H+2K) HD], step, qr [B, H HD], kr / vr [B, S, K, HD], valid [B, S]. */
export function ropeSource(s: AttnSpec): string {
  const {H, K, HD, ROT, S, T} = s;
  const half = ROT / 2, QKV = (H + 2 * K) * HD;
  const rot = (src: string, base: string) => `
      var val : f32;
      if (j < ${half}u) {
        val = ${src}[${base} + j] * cs - ${src}[${base} + j + ${half}u] * sn;
      } else if (j < ${ROT}u) {
        val = ${src}[${base} + j] * cs + ${src}[${base} + j - ${half}u] * sn;
      } else {
        val = ${src}[${base} + j];
      }`;
  return `
@group(0) @binding(0) var<storage, read> qkv : array<f32>;
@group(0) @binding(1) var<storage, read> step : array<u32>;
@group(0) @binding(2) var<storage, read_write> qr : array<f32>;
@group(0) @binding(3) var<storage, read_write> kr : array<f32>;
@group(0) @binding(4) var<storage, read_write> vr : array<f32>;
@group(0) @binding(5) var<storage, read_write> valid : array<f32>;

fn cosSin(b : u32, j : u32) -> vec2<f32> {
  var jj = j;
  if (j >= ${half}u) { jj = j - ${half}u; }
  if (j >= ${ROT}u) { return vec2<f32>(1.0, 0.0); }
  let i = b * ${s.step.half}u + jj;
  return vec2<f32>(bitcast<f32>(step[${s.step.cos}u + i]), bitcast<f32>(step[${s.step.sin}u + i]));
}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let b = wid.x;
  let pos = step[${s.step.pos}u + b];
  let slot = step[${s.step.slot}u];
  for (var idx = t; idx < ${(H + K) * HD}u; idx = idx + ${T}u) {
    let hh = idx / ${HD}u;
    let j = idx % ${HD}u;
    let c = cosSin(b, j);
    let cs = c.x;
    let sn = c.y;
    let base = b * ${QKV}u + hh * ${HD}u;
    ${rot('qkv', 'base')}
    if (hh < ${H}u) {
      qr[b * ${H * HD}u + idx] = val;
    } else {
      let kh = hh - ${H}u;
      let dst = ((b * ${S}u + slot) * ${K}u + kh) * ${HD}u + j;
      kr[dst] = val;
      vr[dst] = qkv[base + ${K * HD}u + j];
    }
  }
  for (var sl = t; sl < ${S}u; sl = sl + ${T}u) {
    if (sl == slot) {
      valid[b * ${S}u + sl] = 1.0;
    } else if (pos == 0u) {
      valid[b * ${S}u + sl] = 0.0;
    }
  }
}`;
}

const NEG = '-3.0e38';

/** Bindings: qr, kr, vr, valid, part [B, H, NC, HD + 2] (o, max, sum). Grid (NC, K, B). */
export function attnPartialSource(s: AttnSpec): string {
  const {H, K, HD, S, CS, T} = s;
  const G = H / K, NC = attnChunks(s);
  const vec = HD % 4 === 0;
  const scale = 1 / Math.sqrt(HD);
  // q and k as vec4 when the head dim allows (the same buffers the RoPE kernel writes as f32).
  const dotLoop = vec
    ? `for (var j = 0u; j < ${HD / 4}u; j = j + 1u) { d = d + dot(qr[qb / 4u + j], kr[kb / 4u + j]); }`
    : `for (var j = 0u; j < ${HD}u; j = j + 1u) { d = d + qr[qb + j] * kr[kb + j]; }`;
  const QK = vec ? 'array<vec4<f32>>' : 'array<f32>';
  return `
@group(0) @binding(0) var<storage, read> qr : ${QK};
@group(0) @binding(1) var<storage, read> kr : ${QK};
@group(0) @binding(2) var<storage, read> vr : array<f32>;
@group(0) @binding(3) var<storage, read> valid : array<f32>;
@group(0) @binding(4) var<storage, read_write> part : array<f32>;
var<workgroup> sc : array<f32, ${G * CS}>;
var<workgroup> mx : array<f32, ${G}>;
var<workgroup> sm : array<f32, ${G}>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let c = wid.x;
  let kh = wid.y;
  let b = wid.z;
  let s0 = c * ${CS}u;
  for (var p = t; p < ${G * CS}u; p = p + ${T}u) {
    let g = p / ${CS}u;
    let sl = s0 + p % ${CS}u;
    var v = ${NEG};
    if (sl < ${S}u) {
      if (valid[b * ${S}u + sl] > 0.0) {
        let qb = (b * ${H}u + kh * ${G}u + g) * ${HD}u;
        let kb = ((b * ${S}u + sl) * ${K}u + kh) * ${HD}u;
        var d = 0.0;
        ${dotLoop}
        v = d * ${f32(scale)};
      }
    }
    sc[p] = v;
  }
  workgroupBarrier();
  if (t < ${G}u) {
    var m = ${NEG};
    for (var i = 0u; i < ${CS}u; i = i + 1u) { m = max(m, sc[t * ${CS}u + i]); }
    var l = 0.0;
    for (var i = 0u; i < ${CS}u; i = i + 1u) {
      let sv = sc[t * ${CS}u + i];
      var e = 0.0;
      if (sv > -1.0e38) { e = exp(sv - m); }
      sc[t * ${CS}u + i] = e;
      l = l + e;
    }
    mx[t] = m;
    sm[t] = l;
  }
  workgroupBarrier();
  // P V: invocation j reads each valid slot's value once for the G query heads sharing it.
  for (var j = t; j < ${HD}u; j = j + ${T}u) {
    var acc : array<f32, ${G}>;
    for (var g = 0u; g < ${G}u; g = g + 1u) { acc[g] = 0.0; }
    for (var i = 0u; i < ${CS}u; i = i + 1u) {
      let sl = s0 + i;
      if (sl < ${S}u) {
        if (valid[b * ${S}u + sl] > 0.0) {
          let v = vr[((b * ${S}u + sl) * ${K}u + kh) * ${HD}u + j];
          for (var g = 0u; g < ${G}u; g = g + 1u) { acc[g] = acc[g] + sc[g * ${CS}u + i] * v; }
        }
      }
    }
    for (var g = 0u; g < ${G}u; g = g + 1u) {
      part[((b * ${H}u + kh * ${G}u + g) * ${NC}u + c) * ${HD + 2}u + j] = acc[g];
    }
  }
  if (t < ${G}u) {
    let pb = ((b * ${H}u + kh * ${G}u + t) * ${NC}u + c) * ${HD + 2}u;
    part[pb + ${HD}u] = mx[t];
    part[pb + ${HD + 1}u] = sm[t];
  }
}`;
}

/** Invocations of the partial attention kernel: enough for the scores of a chunk and for the head dim, at most 256. */
export function attnThreads(G: number, CS: number, HD: number): number {
  return Math.min(256, Math.max(32, Math.ceil(Math.max(G * CS, HD) / 32) * 32));
}

/** Bindings: part, attn [B, H HD]. Grid (H, B). */
export function attnCombineSource(s: AttnSpec): string {
  const {H, HD} = s;
  const NC = attnChunks(s), T = Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32));
  return `
@group(0) @binding(0) var<storage, read> part : array<f32>;
@group(0) @binding(1) var<storage, read_write> attn : array<f32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let h = wid.x;
  let b = wid.y;
  let base = (b * ${H}u + h) * ${NC}u;
  var m = ${NEG};
  for (var c = 0u; c < ${NC}u; c = c + 1u) { m = max(m, part[(base + c) * ${HD + 2}u + ${HD}u]); }
  var l = 0.0;
  for (var c = 0u; c < ${NC}u; c = c + 1u) {
    let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
    if (mc > -1.0e38) { l = l + exp(mc - m) * part[(base + c) * ${HD + 2}u + ${HD + 1}u]; }
  }
  for (var j = t; j < ${HD}u; j = j + ${T}u) {
    var o = 0.0;
    for (var c = 0u; c < ${NC}u; c = c + 1u) {
      let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
      if (mc > -1.0e38) { o = o + exp(mc - m) * part[(base + c) * ${HD + 2}u + j]; }
    }
    attn[(b * ${H}u + h) * ${HD}u + j] = o / l;
  }
}`;
}

export function attnCombineThreads(HD: number): number { return Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32)); }

export interface EmbedSpec { B: number; D: number; start: number; rows: number; scale: number; step: StepLayout }

/** Bindings: e (one piece, [rows, D]), step, x [B, D]. One thread per output value. */
export function embedSource(s: EmbedSpec): string {
  return `
@group(0) @binding(0) var<storage, read> e : array<f32>;
@group(0) @binding(1) var<storage, read> step : array<u32>;
@group(0) @binding(2) var<storage, read_write> x : array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let idx = gid.x;
  if (idx >= ${s.B * s.D}u) { return; }
  let b = idx / ${s.D}u;
  let j = idx % ${s.D}u;
  let id = i32(step[${s.step.ids}u + b]) - ${s.start};
  if (id >= 0 && id < ${s.rows}) { x[idx] = e[u32(id) * ${s.D}u + j] * ${f32(s.scale)}; }
}`;
}
