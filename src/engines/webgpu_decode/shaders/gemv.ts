/**
 * The GEMV kernel: y = [rmsnorm](x) W^T (+ bias) for 1..32 rows, W in PyTorch's [out, in] layout,
 * float32 or packed (bfloat16, float16, int8, int4: shaders/weights.ts, unpacked as loaded), with
 * the epilogues store (optionally GeLU per segment), residual add in place, multiply in place
 * (GeGLU's up in a dispatch of its own), GeGLU (gate, up) and soft cap. All of the engine's matrix work.
 *   const code = gemvSource({B: 1, IN: d, segments: [d], mode: 'residual', norm: false, bias: true, outStride: d,
 *     R: 4, T: 128});
 *
 * A workgroup of T threads computes R output rows for all B rows: threads stride over the input
 * (vec4 loads when IN % 4 == 0; compact weights: 1, 2 or 4 words per load), hold R x B accumulators, and reduce in workgroup memory. With
 * `norm` each workgroup also sums x^2 and scales at the end (the RMSNorm before a projection).
 *
 * Shape letters: B batch rows, IN input width, R rows per workgroup, T threads per workgroup,
 * P 1 or 2 (GeGLU's gate and up), N vectors per input row, U strides per loop trip.
 */
import {COMMON_WGSL, f32} from './common';
import {FLOAT32_WEIGHTS, hasScales, slotLoad, type WeightFormat} from './weights';

export type GemvMode = 'store' | 'residual' | 'mul' | 'geglu' | 'softcap';

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
  /** The weights' storage (default float32): compact ones are unpacked in the loop (shaders/weights.ts). */
  weights?: WeightFormat;
  /** Compact weights: 32-bit words per load (1, 2 or 4; default 4). */
  words?: number;
  /**
   * How the T partial sums of each accumulator are added up (default 'tree'): 'tree' halves all
   * of them together, log2 T barriers; 'split' gives each accumulator a group of threads that
   * add strided partials (rows padded against bank conflicts), two barriers.
   */
  reduce?: 'tree' | 'split';
  /**
   * x loaded just before use, one batch row at a time, after the weights of the stride are
   * unpacked (fewer live registers at large B), instead of with the weight loads (default).
   */
  lazyX?: boolean;
  /** int8 / int4: unpacked by the 2^23 trick (weights.ts slotLoad) instead of int-to-float conversions. */
  magic?: boolean;
  /**
   * 'split': threads per value (a power of 2 dividing T; default gemvSplitGroup of this spec's
   * values). It alone sets the order of a value's sums: an engine fixes it for all batch sizes.
   */
  splitGroup?: number;
}

/** The split reduction's threads per value for NV values over T threads: the largest power of 2 with NV x it <= T (at least 1). */
export function gemvSplitGroup(NV: number, T: number): number {
  let GS = 1;
  while (NV * GS * 2 <= T) GS *= 2;
  return GS;
}

/** Workgroup floats of the reduction: NV values of T partials each (padded rows with 'split'). */
export function gemvReduceFloats(NV: number, T: number, reduce: 'tree' | 'split' = 'tree'): number {
  return NV * (reduce === 'split' ? T + 1 : T);
}

/** The kernel's binding names (gemvBindings gives those of one spec, in order). */
export type GemvBinding = 'x' | 'g' | `w${number}` | `s${number}` | `z${number}` | 'bias' | 'out';

/**
 * Bindings in order: x, [g], w0..w(S-1), [s0..s(S-1) the scales of int8 / int4 weights],
 * [z0..z(S-1) int4's zero points], [bias], out.
 */
export function gemvBindings(s: GemvSpec): string[] {
  const fmt = s.weights ?? FLOAT32_WEIGHTS;
  const per = (c: string) => s.segments.map((_, i) => `${c}${i}`);
  return [
    'x',
    ...(s.norm ? ['g'] : []),
    ...per('w'),
    ...(hasScales(fmt) ? per('s') : []),
    ...(fmt.zeroPoints ? per('z') : []),
    ...(s.bias ? ['bias'] : []),
    'out',
  ];
}

/** Output rows the kernel covers (geglu: m). */
export function gemvRows(s: GemvSpec): number {
  return s.mode === 'geglu' ? s.segments[0] : s.segments.reduce((a, b) => a + b, 0);
}

export function gemvSource(s: GemvSpec): string {
  const {B, IN, R, T, mode} = s;
  const fmt = s.weights ?? FLOAT32_WEIGHTS;
  const compact = fmt.dtype !== 'float32';
  const load = compact ? slotLoad(fmt, s.words ?? 4, s.magic === true) : null;
  const lazy = s.lazyX === true;
  if (load != null && IN % load.K !== 0) throw new Error(`gemv: ${load.K} values per load do not divide ${IN}`);
  const vec = compact || IN % 4 === 0;
  // Slots per input row: what one thread takes per stride (a vec4 / f32, or one load of packed words).
  const N = load != null ? IN / load.K : vec ? IN / 4 : IN;
  const KV = load != null ? load.K / 4 : 1; // vec4s of x per slot
  const X4 = vec ? IN / 4 : IN; // x's vectors per row
  const V = vec ? 'vec4<f32>' : 'f32';
  const dotv = vec ? 'dot' : 'mulf';
  const P = mode === 'geglu' ? 2 : 1;
  const NACC = R * P * B;
  const NV = NACC + (s.norm ? B : 0);
  const rows = gemvRows(s);
  const nwg = rows / R;
  if (!Number.isInteger(nwg)) throw new Error(`gemv: R=${R} does not divide ${rows}`);
  const binds = gemvBindings(s);
  const decl = binds
    .map((name, i) => {
      const ty =
        name === 'x' || name === 'g'
          ? `array<${V}>`
          : name.startsWith('w')
            ? `array<${load?.type ?? V}>`
            : 'array<f32>';
      const access = name === 'out' ? 'read_write' : 'read';
      return `@group(0) @binding(${i}) var<storage, ${access}> ${name} : ${ty};`;
    })
    .join('\n');
  // int4: slots per scale group (a load never straddles one: K <= 32 <= groupSize).
  const G = fmt.dtype === 'int4' ? IN / fmt.groupSize : 0;
  const slotsPerGroup = load != null && fmt.dtype === 'int4' ? fmt.groupSize / load.K : 0;

  // The main loop for one weight segment (P = 1) or the gate/up pair (P = 2): U strides of T
  // slots per trip (all loads first, so that R * P * U weight loads are in flight), then a tail.
  const U = s.U ?? 1;
  const full = Math.floor(N / (T * U)) * T * U;
  const xIndex = (i: string, k: number) => (KV === 1 ? i : `(${i}) * ${KV}u + ${k}u`);
  const loop = (seg: number[], rowBase: string) => {
    const lines: string[] = [];
    const trip = (u: number, i: string) => {
      const L: string[] = [];
      for (let k = 0; k < KV; k++) {
        const xi = xIndex(i, k);
        if (s.norm) L.push(`  let gv${u}_${k} = ${V}(1.0) + g[${xi}];`);
        if (!lazy) for (let b = 0; b < B; b++) L.push(`  let xr${b}_${u}_${k} = x[${b * X4}u + ${xi}];`);
      }
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < P; p++) {
          const row = `(${rowBase} + ${r}u)`;
          L.push(`  let w${r}_${p}_${u} = w${seg[p]}[${row} * ${N}u + ${i}];`);
          if (fmt.dtype === 'int4') {
            const gi = `${row} * ${G}u + (${i}) / ${slotsPerGroup}u`;
            L.push(`  let sc${r}_${p}_${u} = s${seg[p]}[${gi}];`);
            L.push(`  let zp${r}_${p}_${u} = ${fmt.zeroPoints ? `z${seg[p]}[${gi}]` : '8.0'};`);
          }
        }
      }
      return L;
    };
    // One batch row's x of stride u: its loads (lazy), its share of sum(x^2), and x (1 + g).
    const xRow = (u: number, i: string, b: number) => {
      const L: string[] = [];
      for (let k = 0; k < KV; k++) {
        if (lazy) L.push(`  let xr${b}_${u}_${k} = x[${b * X4}u + ${xIndex(i, k)}];`);
        if (s.norm) {
          L.push(`  sq${b} = sq${b} + ${dotv}(xr${b}_${u}_${k}, xr${b}_${u}_${k});`);
          L.push(`  let xv${b}_${u}_${k} = xr${b}_${u}_${k} * gv${u}_${k};`);
        } else {
          L.push(`  let xv${b}_${u}_${k} = xr${b}_${u}_${k};`);
        }
      }
      return L;
    };
    // Lazy: every weight of the stride unpacked first, then one batch row at a time.
    const mathLazy = (u: number, i: string) => {
      const L: string[] = [];
      const terms: {v: number; b: number; sum: (b: number) => string; scale: string | null}[] = [];
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < P; p++) {
          const wv = `w${r}_${p}_${u}`;
          const parts = load != null ? load.unpack(wv, `zp${r}_${p}_${u}`) : [wv];
          if (load != null) parts.forEach((e, k) => L.push(`  let q${r}_${p}_${u}_${k} = ${e};`));
          const wk = (k: number) => (load != null ? `q${r}_${p}_${u}_${k}` : wv);
          for (let b = 0; b < B; b++) {
            terms.push({
              v: (r * P + p) * B + b,
              b,
              sum: (bb) => parts.map((_, k) => `${dotv}(${wk(k)}, xv${bb}_${u}_${k})`).join(' + '),
              scale: fmt.dtype === 'int4' ? `sc${r}_${p}_${u}` : null,
            });
          }
        }
      }
      for (let b = 0; b < B; b++) {
        L.push(...xRow(u, i, b));
        for (const t of terms.filter((t) => t.b === b)) {
          const term = t.scale != null ? `${t.scale} * (${t.sum(b)})` : t.sum(b);
          L.push(`  acc${t.v} = acc${t.v} + ${term};`);
        }
      }
      return L;
    };
    const math = (u: number, i: string) => {
      if (lazy) return mathLazy(u, i);
      const L: string[] = [];
      for (let b = 0; b < B; b++) L.push(...xRow(u, i, b));
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < P; p++) {
          const wv = `w${r}_${p}_${u}`;
          const parts = load != null ? load.unpack(wv, `zp${r}_${p}_${u}`) : [wv];
          if (load != null) parts.forEach((e, k) => L.push(`  let q${r}_${p}_${u}_${k} = ${e};`));
          const wk = (k: number) => (load != null ? `q${r}_${p}_${u}_${k}` : wv);
          for (let b = 0; b < B; b++) {
            const v = (r * P + p) * B + b;
            const sum = parts.map((_, k) => `${dotv}(${wk(k)}, xv${b}_${u}_${k})`).join(' + ');
            const term = fmt.dtype === 'int4' ? `sc${r}_${p}_${u} * (${sum})` : sum;
            L.push(`  acc${v} = acc${v} + ${term};`);
          }
        }
      }
      return L;
    };
    const at = (u: number) => (u === 0 ? 'i' : `i + ${u * T}u`);
    if (full > 0) {
      lines.push(`for (var i = t; i < ${full}u; i = i + ${T * U}u) {`);
      for (let u = 0; u < U; u++) lines.push(...trip(u, at(u)));
      for (let u = 0; u < U; u++) lines.push(...math(u, at(u)));
      lines.push('}');
    }
    if (full < N) {
      lines.push(`for (var i = ${full}u + t; i < ${N}u; i = i + ${T}u) {`);
      lines.push(...trip(0, 'i'), ...math(0, 'i'));
      lines.push('}');
    }
    return lines.join('\n');
  };

  let body: string;
  if (mode === 'geglu') {
    body = loop([0, 1], 'row0');
  } else {
    // Segments: R divides each, so a workgroup lies in one.
    const parts: string[] = [];
    let start = 0;
    s.segments.forEach((n, k) => {
      const cond = k === s.segments.length - 1 ? '' : `if (row0 < ${start + n}u) `;
      parts.push(`${k > 0 ? 'else ' : ''}${cond}{\n${loop([k], `(row0 - ${start}u)`)}\n}`);
      start += n;
    });
    body = parts.join('\n');
  }

  // int8: the row's scale, applied once to the finished sum.
  const rowScaled = fmt.dtype === 'int8';
  let fin: string;
  const outIdx = `b * ${s.outStride}u + ${s.outOffset ?? 0}u + row`;
  const rsb = s.norm
    ? `let rs = 1.0 / sqrt(total(${NACC}u + b) / ${f32(IN)} + ${f32(s.eps ?? 1e-6)});`
    : 'let rs = 1.0;';
  if (mode === 'geglu') {
    const m = s.segments[0];
    fin = `
    let r = t / ${B}u; let b = t % ${B}u; let row = row0 + r;
    ${rsb}
    var gt = total((r * 2u) * ${B}u + b) * rs${rowScaled ? ' * s0[row]' : ''};
    var up = total((r * 2u + 1u) * ${B}u + b) * rs${rowScaled ? ' * s1[row]' : ''};
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
    let scale = '';
    if (rowScaled) {
      let start = 0;
      const picks = s.segments.map((n, k) => {
        const cond = k === s.segments.length - 1 ? '' : `if (row < ${start + n}u) `;
        const pick = `${k > 0 ? 'else ' : ''}${cond}{ v = v * s${k}[row - ${start}u]; }`;
        start += n;
        return pick;
      });
      scale = picks.join(' ');
    }
    const write =
      mode === 'residual'
        ? `out[${outIdx}] = v + out[${outIdx}];`
        : mode === 'mul'
          ? `out[${outIdx}] = v * out[${outIdx}];`
          : mode === 'softcap'
            ? `out[${outIdx}] = tanhP(v / ${f32(s.cap!)}) * ${f32(s.cap!)};`
            : `out[${outIdx}] = v;`;
    fin = `
    let r = t / ${B}u; let b = t % ${B}u; let row = row0 + r;
    ${rsb}
    var v = total(r * ${B}u + b) * rs;
    ${scale}
    ${s.bias ? 'v = v + bias[row];' : ''}
    ${post}
    ${write}`;
  }

  const split = s.reduce === 'split';
  const TP = split ? T + 1 : T; // a value's row of partials in red
  // split: GS threads per value (a power of 2; by default NV * GS <= T where it can), each adding T / GS partials.
  const GS = s.splitGroup ?? gemvSplitGroup(NV, T);
  if (!(GS >= 1 && T % GS === 0 && (GS & (GS - 1)) === 0)) throw new Error(`gemv: ${GS} threads per value for ${T}`);
  const store = (v: number) => `red[${v * TP}u + t] = `;
  const reduce = split
    ? `
  workgroupBarrier();
  for (var v = t / ${GS}u; v < ${NV}u; v = v + ${T / GS}u) {
    let j = t % ${GS}u;
    var sum = 0.0;
    for (var i = j; i < ${T}u; i = i + ${GS}u) { sum = sum + red[v * ${TP}u + i]; }
    red[v * ${TP}u + j] = sum;
  }
  workgroupBarrier();`
    : `
  workgroupBarrier();
  for (var st = ${T / 2}u; st > 0u; st = st >> 1u) {
    if (t < st) {
      for (var v = 0u; v < ${NV}u; v = v + 1u) { red[v * ${T}u + t] = red[v * ${T}u + t] + red[v * ${T}u + t + st]; }
    }
    workgroupBarrier();
  }`;
  const totalFn = split
    ? `fn total(v : u32) -> f32 {
  var sum = 0.0;
  for (var j = 0u; j < ${GS}u; j = j + 1u) { sum = sum + red[v * ${TP}u + j]; }
  return sum;
}`
    : `fn total(v : u32) -> f32 { return red[v * ${T}u]; }`;

  return `
${COMMON_WGSL}
fn mulf(a : f32, b : f32) -> f32 { return a * b; }
${decl}
var<workgroup> red : array<f32, ${gemvReduceFloats(NV, T, s.reduce)}>;
${totalFn}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nw : vec3<u32>,
        @builtin(local_invocation_index) t : u32) {
  let wg = wid.x + wid.y * nw.x;
  if (wg >= ${nwg}u) { return; }
  let row0 = wg * ${R}u;
  ${Array.from({length: NACC}, (_, v) => `var acc${v} = 0.0;`).join(' ')}
  ${Array.from({length: B}, (_, b) => `var sq${b} = 0.0;`).join(' ')}
${body}
  ${Array.from({length: NACC}, (_, v) => `${store(v)}acc${v};`).join(' ')}
  ${s.norm ? Array.from({length: B}, (_, b) => `${store(NACC + b)}sq${b};`).join(' ') : ''}${reduce}
  if (t < ${R * B}u) {${fin}
  }
}`;
}
