/**
 * The prefill chunk's attention kernel: windowed causal multi-query attention, flash style, of a
 * chunk's (already rotated) queries over the keys before the chunk (the decode engine's ring)
 * and the chunk's own keys. Online softmax in float32; no [t, t] scores: a workgroup takes QT
 * queries x the G = H/K query heads of one key/value head, and walks only the keys its queries can
 * see (from the first query's window start, or its document start, to the last query) in tiles of
 * KT keys held in workgroup memory, shared by all its rows.
 *   const spec = {H: 10, K: 1, HD: 256, ROT: 128, W: 2048};
 *   const tuning = attnTuning(spec, {maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024});
 *   const code = attnSource(spec, tuning);   // bindings attnBindings(spec), grid attnGrid(spec, 4096, 2048, tuning)
 *
 * Bindings: dims (u32: dims[0] = M token rows, dims[1] = t steps per batch row, dims[headWord]
 * (default 2) = the ring slot `head` the chunk's first key would take when decoded), qkv
 * [M, (H + 2K) HD] (q heads, k heads, v heads per token row; rows r * t + j), pos [M] (u32
 * position per token row; 0 starts a document), kr, vr [b, S, K, HD] and valid [b, S] (the decode
 * engine's ring, S = W + 1: the key j steps before the chunk sits in slot (head - j) mod S), attn
 * [M, H HD] (written).
 *
 * Visibility (SPEC.md, layers/attention.ts): the query at step i of a row sees the key at step j
 * (negative: in the ring) when i - W <= j <= i, no position 0 lies in (j, i], and a ring key's
 * slot is valid. Scores scale by HD^-0.5.
 *
 * Shape letters: M token rows (b * t), b batch rows, t steps per row, H query heads, K key/value
 * heads, G = H/K, HD head dim, W window, S ring slots, QT queries per workgroup, R = QT G rows of
 * a workgroup (RP padded), RM rows and CM keys per invocation, TC invocations across keys, KT = TC
 * CM keys per tile, DC head dims per score slice, KV keys per value slice, T invocations.
 */
import {f32, NEG_WGSL} from '../../webgpu_decode/shaders/common';

/** The shapes baked into the chunk attention kernels (RoPE, attention, ring write). */
export interface ChunkAttnSpec {
  /** Query heads. */
  H: number;
  /** Key/value heads (H % K = 0). */
  K: number;
  /** Head dim (a multiple of 4). */
  HD: number;
  /** Rotary dims (even, <= HD). */
  ROT: number;
  /** attention_window_size; the ring has W + 1 slots. */
  W: number;
  /** The dims word holding the ring's head (default 2). */
  headWord?: number;
}

/** The attention kernel's tile shape. */
export interface AttnTuning {
  /** Queries per workgroup. */
  QT: number;
  /** Rows (query x head) per invocation. */
  RM: number;
  /** Invocations across the keys of a tile (and across the head dim in P V). */
  TC: number;
  /** Keys per invocation in the scores; a tile has TC * CM keys. */
  CM: number;
  /** Head dims per slice of the score phase (a multiple of 4 dividing HD). */
  DC: number;
  /** Keys per slice of the P V phase (divides TC * CM). */
  KV: number;
}

/** Workgroup limits the tuning must fit (the WebGPU defaults when absent). */
export interface AttnLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
}

const DEFAULT_LIMITS: AttnLimits = {maxComputeWorkgroupStorageSize: 16384 * 2, maxComputeInvocationsPerWorkgroup: 256};

/** Rows (query x head) a workgroup aims for by default. */
const TARGET_ROWS = 80;

function check(spec: ChunkAttnSpec): void {
  const {H, K, HD, W} = spec;
  if (!(H >= 1 && K >= 1 && H % K === 0)) throw new Error(`prefill attention: ${H} query heads over ${K} kv heads`);
  if (!(HD >= 4 && HD % 4 === 0)) throw new Error(`prefill attention: head dim ${HD} is not a multiple of 4`);
  if (!(Number.isInteger(W) && W >= 1)) throw new Error(`prefill attention: window ${W}`);
}

interface Derived extends AttnTuning {
  G: number;
  R: number;
  TR: number;
  RP: number;
  T: number;
  KT: number;
  NV: number;
}

function derive(spec: ChunkAttnSpec, tn: AttnTuning): Derived {
  const G = spec.H / spec.K;
  const R = tn.QT * G,
    TR = Math.ceil(R / tn.RM);
  return {...tn, G, R, TR, RP: TR * tn.RM, T: TR * tn.TC, KT: tn.TC * tn.CM, NV: Math.ceil(spec.HD / 4 / tn.TC)};
}

/** Workgroup memory of the attention kernel in bytes. */
export function attnSharedBytes(spec: ChunkAttnSpec, tuning: AttnTuning): number {
  const d = derive(spec, tuning);
  const QS = d.DC / 4 + 1;
  const sh = Math.max((d.RP + d.KT) * QS, d.KV * (spec.HD / 4)) * 16;
  return sh + 4 * (d.KT * (d.RP + 1) + 3 * d.RP + d.KT + 2 * d.QT + 4);
}

function tuningProblem(spec: ChunkAttnSpec, tn: AttnTuning, limits: AttnLimits): string | null {
  const {QT, RM, TC, CM, DC, KV} = tn;
  for (const [k, v] of Object.entries(tn)) if (!(Number.isInteger(v) && v >= 1)) return `${k} = ${v}`;
  if (DC % 4 !== 0 || spec.HD % DC !== 0) return `DC = ${DC} must be a multiple of 4 dividing ${spec.HD}`;
  if ((TC * CM) % KV !== 0) return `KV = ${KV} must divide TC * CM = ${TC * CM}`;
  const d = derive(spec, tn);
  if (d.T > limits.maxComputeInvocationsPerWorkgroup) return `${d.T} invocations (QT ${QT}, RM ${RM}, TC ${TC})`;
  const bytes = attnSharedBytes(spec, tn);
  if (bytes > limits.maxComputeWorkgroupStorageSize) return `${bytes} bytes of workgroup memory`;
  return null;
}

/** Knobs from GRIFFIN_PREFILL_ATTN ("QT=8,RM=5,TC=16,CM=4,DC=32,KV=16", any subset). */
function envTuning(): Partial<AttnTuning> {
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_PREFILL_ATTN : undefined;
  const out: Partial<AttnTuning> = {};
  for (const part of (v ?? '').split(',').filter(Boolean)) {
    const [k, n] = part.split('=');
    if (!['QT', 'RM', 'TC', 'CM', 'DC', 'KV'].includes(k) || !Number.isInteger(Number(n))) {
      throw new Error(`GRIFFIN_PREFILL_ATTN: bad knob '${part}' (QT, RM, TC, CM, DC, KV = integers)`);
    }
    out[k as keyof AttnTuning] = Number(n);
  }
  return out;
}

/**
 * The tile shape: `over` (then GRIFFIN_PREFILL_ATTN) where set, else the default: about 80 rows
 * (QT = 80 / G queries), 5 or 4 rows per invocation, 16 x 4 keys per tile, head-dim slices of 32
 * and value slices of 16, shrunk (QT halved, then DC, KV) until it fits `limits`. Throws when a
 * knob that was set does not fit.
 */
export function attnTuning(spec: ChunkAttnSpec, limits?: AttnLimits, over: Partial<AttnTuning> = {}): AttnTuning {
  check(spec);
  const lim = limits ?? DEFAULT_LIMITS;
  const set = {...envTuning(), ...over};
  const G = spec.H / spec.K,
    HD = spec.HD;
  const divisorAtMost = (n: number, cap: number) => {
    for (let x = Math.min(cap, n); x >= 4; x -= 4) if (n % x === 0 && x % 4 === 0) return x;
    return 4;
  };
  let QT = set.QT ?? Math.max(1, Math.round(TARGET_ROWS / G));
  const rmFor = (qt: number) => set.RM ?? ((qt * G) % 5 === 0 ? 5 : 4);
  const TC = set.TC ?? 16,
    CM = set.CM ?? 4;
  let DC = set.DC ?? divisorAtMost(HD, 32);
  let KV = set.KV ?? Math.min(16, TC * CM);
  for (;;) {
    const tn = {QT, RM: rmFor(QT), TC, CM, DC, KV};
    const why = tuningProblem(spec, tn, lim);
    if (why == null) return tn;
    if (set.QT == null && QT > 1) QT = Math.max(1, Math.floor(QT / 2));
    else if (set.DC == null && DC > 4) DC = divisorAtMost(HD, DC - 4);
    else if (set.KV == null && KV > 1) KV = Math.max(1, KV / 2);
    else throw new Error(`prefill attention tuning does not fit: ${why}`);
  }
}

/** What the attention kernel binds, in order. */
export function attnBindings(_spec: ChunkAttnSpec): string[] {
  return ['dims', 'qkv', 'pos', 'kr', 'vr', 'valid', 'attn'];
}

/** Grid: query tiles of a row, key/value heads, batch rows (M = b t). */
export function attnGrid(
  spec: ChunkAttnSpec,
  M: number,
  t: number,
  tuning: AttnTuning = attnTuning(spec),
): [number, number, number] {
  if (!(Number.isInteger(t) && t >= 1 && M % t === 0 && M >= t)) throw new Error(`prefill attention: M ${M}, t ${t}`);
  return [Math.ceil(t / tuning.QT), spec.K, M / t];
}

/** WGSL of the attention kernel (see the file's header). */
export function attnSource(spec: ChunkAttnSpec, tuning: AttnTuning = attnTuning(spec)): string {
  check(spec);
  const why = tuningProblem(spec, tuning, {
    maxComputeWorkgroupStorageSize: Infinity,
    maxComputeInvocationsPerWorkgroup: Infinity,
  });
  if (why != null) throw new Error(`prefill attention tuning: ${why}`);
  const {H, K, HD, W} = spec;
  const HW = spec.headWord ?? 2;
  const d = derive(spec, tuning);
  const {QT, RM, TC, CM, DC, KV, G, R, RP, T, KT, NV} = d;
  const S = W + 1,
    HD4 = HD / 4,
    QKV4 = ((H + 2 * K) * HD) / 4,
    DC4 = DC / 4,
    QS = DC4 + 1,
    PS = RP + 1,
    KOFF = RP * QS,
    SH = Math.max((RP + KT) * QS, KV * HD4);
  const rs = [...Array(RM).keys()],
    cs = [...Array(CM).keys()],
    vs = [...Array(NV).keys()];
  const ragged = HD4 % TC !== 0;
  const each = <X>(xs: X[], f: (x: X) => string, sep = '\n') => xs.map(f).join(sep);
  const both = (f: (r: number, c: number) => string, cols = cs) => each(rs, (r) => each(cols, (c) => f(r, c)));
  // Loads of a slice into registers (pq, pk, pv: e = tid + n T of the slice), and their stores into sh.
  const NQ = Math.ceil((RP * DC4) / T),
    NK = Math.ceil((KT * DC4) / T),
    NL = Math.ceil((KV * HD4) / T);
  const ns = (n: number) => [...Array(n).keys()];
  const guard = (n: number, total: number) => ((n + 1) * T > total ? `if (tid + ${n * T}u < ${total}u) ` : '');
  const loadQ = (dc: string) =>
    each(
      ns(NQ),
      (n) => `      {
        let e = tid + ${n * T}u;
        let row = e / ${DC4}u;
        let i = i0 + i32(row / ${G}u);
        pq${n} = vec4<f32>(0.0);
        if ((row < ${R}u) & (i < t)) {
          pq${n} = qkv[u32(rowBase + i) * ${QKV4}u + (kh * ${G}u + row % ${G}u) * ${HD4}u + ${dc} + e % ${DC4}u]
            * ${f32(1 / Math.sqrt(HD))};
        }
      }`,
    );
  const loadK = (dc: string) =>
    each(
      ns(NK),
      (n) => `      {
        let e = tid + ${n * T}u;
        let j = j0 + i32(e / ${DC4}u);
        let d4 = ${dc} + e % ${DC4}u;
        pk${n} = vec4<f32>(0.0);
        if ((j < qEnd) & (e < ${KT * DC4}u)) {
          if (j >= 0) {
            pk${n} = qkv[u32(rowBase + j) * ${QKV4}u + (${H}u + kh) * ${HD4}u + d4];
          } else {
            pk${n} = kr[((r * ${S}u + ringSlot(head, j)) * ${K}u + kh) * ${HD4}u + d4];
          }
        }
      }`,
    );
  const storeQK = [
    ...ns(NQ).map(
      (n) =>
        `      ${guard(n, RP * DC4)}{ sh[((tid + ${n * T}u) / ${DC4}u) * ${QS}u + (tid + ${n * T}u) % ${DC4}u] = pq${n}; }`,
    ),
    ...ns(NK).map(
      (n) =>
        `      ${guard(n, KT * DC4)}{ sh[${KOFF}u + ((tid + ${n * T}u) / ${DC4}u) * ${QS}u + (tid + ${n * T}u) % ${DC4}u] = pk${n}; }`,
    ),
  ].join('\n');
  const loadV = (kc: string) =>
    each(
      ns(NL),
      (n) => `      {
        let e = tid + ${n * T}u;
        let j = j0 + i32(${kc} + e / ${HD4}u);
        let d4 = e % ${HD4}u;
        pv${n} = vec4<f32>(0.0);
        if ((j < qEnd) & (e < ${KV * HD4}u)) {
          if (j >= 0) {
            pv${n} = qkv[u32(rowBase + j) * ${QKV4}u + (${H + K}u + kh) * ${HD4}u + d4];
          } else {
            pv${n} = vr[((r * ${S}u + ringSlot(head, j)) * ${K}u + kh) * ${HD4}u + d4];
          }
        }
      }`,
    );
  const storeV = each(ns(NL), (n) => `      ${guard(n, KV * HD4)}{ sh[tid + ${n * T}u] = pv${n}; }`);
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> qkv : array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pos : array<u32>;
@group(0) @binding(3) var<storage, read> kr : array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vr : array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> valid : array<f32>;
@group(0) @binding(6) var<storage, read_write> attn : array<vec4<f32>>;

var<workgroup> sh : array<vec4<f32>, ${SH}>;
var<workgroup> ps : array<f32, ${KT * PS}>;
var<workgroup> rowM : array<f32, ${RP}>;
var<workgroup> rowL : array<f32, ${RP}>;
var<workgroup> rowA : array<f32, ${RP}>;
var<workgroup> kok : array<u32, ${KT}>;
var<workgroup> qlo : array<i32, ${QT}>;
var<workgroup> wDq : array<atomic<i32>, ${QT}>;
var<workgroup> wD0 : atomic<i32>;
var<workgroup> wDmax : atomic<i32>;
var<workgroup> wLo : i32;

fn ringSlot(head : i32, j : i32) -> u32 {
  return u32((head + ${S} + j) % ${S});
}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let t = i32(dims[1]);
  let head = i32(dims[${HW}]);
  let i0 = i32(wid.x) * ${QT};
  let kh = wid.y;
  let r = wid.z;
  if (i0 >= t) { return; }
  let rowBase = i32(r) * t;
  let tr = tid / ${TC}u;
  let tc = tid % ${TC}u;
  if (tid < ${QT}u) { atomicStore(&wDq[tid], 0); }
  if (tid == 0u) { atomicStore(&wD0, 0); atomicStore(&wDmax, 0); }
  if (tid < ${RP}u) { rowM[tid] = ${NEG_WGSL}; rowL[tid] = 0.0; }
  workgroupBarrier();
  // Document starts (position 0) the tile's queries may reach back to, and the oldest valid ring key.
  let qEnd = min(i0 + ${QT}, t);
  for (var j = max(0, i0 - ${W}) + i32(tid); j < qEnd; j = j + ${T}) {
    if (pos[rowBase + j] == 0u) {
      if (j <= i0) {
        atomicMax(&wD0, j + 1);
      } else {
        for (var q = j - i0; q < ${QT}; q = q + 1) { atomicMax(&wDq[q], j + 1); }
      }
    }
  }
  for (var dd = 1 + i32(tid); dd <= ${W} - i0; dd = dd + ${T}) {
    if (valid[r * ${S}u + ringSlot(head, -dd)] > 0.0) { atomicMax(&wDmax, dd); }
  }
  workgroupBarrier();
  if (tid < ${QT}u) {
    let i = i0 + i32(tid);
    let ds = max(atomicLoad(&wD0), atomicLoad(&wDq[tid])) - 1;
    var lo = i - ${W};
    if (ds >= 0) { lo = max(lo, ds); } else { lo = max(lo, -atomicLoad(&wDmax)); }
    qlo[tid] = lo;
    if (tid == 0u) { wLo = lo; }
  }
  let lo = workgroupUniformLoad(&wLo);
  // This invocation's rows: the query, head, step and first visible key of each.
${each(
  rs,
  (r) => `  let rr${r} = tr * ${RM}u + ${r}u;
  let ok${r} = rr${r} < ${R}u;
  let g${r} = rr${r} % ${G}u;
  let qi${r} = i0 + i32(min(rr${r} / ${G}u, ${QT - 1}u));
  let lo${r} = qlo[min(rr${r} / ${G}u, ${QT - 1}u)];`,
)}
${each(vs, (c) => `  let cv${c} = ${ragged ? `min(tc + ${TC * c}u, ${HD4 - 1}u)` : `tc + ${TC * c}u`};`)}
${both((r, c) => `  var o${r}_${c} = vec4<f32>(0.0);`, vs)}
${each(ns(NQ), (n) => `  var pq${n} : vec4<f32>;`)}
${each(ns(NK), (n) => `  var pk${n} : vec4<f32>;`)}
${each(ns(NL), (n) => `  var pv${n} : vec4<f32>;`)}
  for (var j0 = lo; j0 < qEnd; j0 = j0 + ${KT}) {
    if (tid < ${KT}u) {
      let j = j0 + i32(tid);
      var ok = 0u;
      if (j < qEnd) {
        if (j >= 0) { ok = 1u; } else if (valid[r * ${S}u + ringSlot(head, j)] > 0.0) { ok = 1u; }
      }
      kok[tid] = ok;
    }
    // Scores of RM rows x CM keys (keys tc, tc + TC, ...), over slices of DC head dims.
${both((r, c) => `    var s${r}_${c} = 0.0;`)}
${loadQ('0u')}
${loadK('0u')}
    for (var dc = 0u; dc < ${HD4}u; dc = dc + ${DC4}u) {
${storeQK}
      workgroupBarrier();
      // The next slice's loads, in flight while this one is summed.
      if (dc + ${DC4}u < ${HD4}u) {
${loadQ(`dc + ${DC4}u`)}
${loadK(`dc + ${DC4}u`)}
      }
      for (var d4 = 0u; d4 < ${DC4}u; d4 = d4 + 1u) {
${each(rs, (r) => `        let q${r} = sh[rr${r} * ${QS}u + d4];`)}
${each(cs, (c) => `        let k${c} = sh[${KOFF}u + (tc + ${TC * c}u) * ${QS}u + d4];`)}
${both((r, c) => `        s${r}_${c} = s${r}_${c} + dot(q${r}, k${c});`)}
      }
      workgroupBarrier();
    }
${loadV('0u')}
    // Masked scores into ps; then per row (one invocation each) the online softmax: the new
    // maximum, the probabilities in place, the rescale of what came before and the new sum.
${both(
  (r, c) => `    ps[(tc + ${TC * c}u) * ${PS}u + rr${r}] = select(${NEG_WGSL}, s${r}_${c},
      ok${r} & (kok[tc + ${TC * c}u] != 0u) & (j0 + i32(tc + ${TC * c}u) <= qi${r}) & (j0 + i32(tc + ${TC * c}u) >= lo${r}));`,
)}
    workgroupBarrier();
    if (tid < ${RP}u) {
      var mt = ${NEG_WGSL};
      for (var c = 0u; c < ${KT}u; c = c + 1u) { mt = max(mt, ps[c * ${PS}u + tid]); }
      let mo = rowM[tid];
      let mn = max(mo, mt);
      let a = exp(mo - mn);
      var l = 0.0;
      for (var c = 0u; c < ${KT}u; c = c + 1u) {
        let sv = ps[c * ${PS}u + tid];
        let p = select(0.0, exp(sv - mn), sv > -1.0e38);
        ps[c * ${PS}u + tid] = p;
        l = l + p;
      }
      rowA[tid] = a;
      rowM[tid] = mn;
      rowL[tid] = rowL[tid] * a + l;
    }
    // P V over slices of KV keys.
    for (var kc = 0u; kc < ${KT}u; kc = kc + ${KV}u) {
      if (j0 + i32(kc) >= qEnd) { break; }
${storeV}
      workgroupBarrier();
      if (kc == 0u) {
${each(rs, (r) => `        let a${r} = rowA[rr${r}];`)}
${both((r, c) => `        o${r}_${c} = o${r}_${c} * a${r};`, vs)}
      }
      if (kc + ${KV}u < ${KT}u) {
${loadV(`kc + ${KV}u`)}
      }
      for (var k = 0u; k < ${KV}u; k = k + 1u) {
${each(rs, (r) => `        let p${r} = ps[(kc + k) * ${PS}u + rr${r}];`)}
${each(vs, (c) => `        let v${c} = sh[k * ${HD4}u + cv${c}];`)}
${both((r, c) => `        o${r}_${c} = o${r}_${c} + p${r} * v${c};`, vs)}
      }
      workgroupBarrier();
    }
  }
${each(
  rs,
  (r) => `  if (ok${r} && qi${r} < t) {
    let inv = 1.0 / rowL[rr${r}];
    let ob = (u32(rowBase + qi${r}) * ${H}u + kh * ${G}u + g${r}) * ${HD4}u;
${each(vs, (c) => `    ${ragged ? `if (tc + ${TC * c}u < ${HD4}u) { ` : ''}attn[ob + cv${c}] = o${r}_${c} * inv;${ragged ? ' }' : ''}`)}
  }`,
)}
}`;
}
