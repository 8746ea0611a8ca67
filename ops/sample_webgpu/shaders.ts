/**
 * The WGSL of the GPU sampler (sampler.ts runs it), one generator per kernel, every shape baked in
 * as a constant. Per row of logits: the repetition penalty (seen ids in a bitmap), the temperature,
 * the top-k threshold and the top-p cutoff each found by a radix select over the float bits (4
 * rounds of 8 bits: a histogram pass over the row, then a pick), min-p, and a draw in id order
 * with Philox4x32-10. Probability masses are exp(z - max z) in 64-bit fixed point, summed with
 * integer atomics: exact and independent of the order, so a seed gives the same token every run.
 *   const shape = sampleShape(256000);               // chunks, bitmap words, fixed-point scale
 *   const code = sampleKernels(shape).get('draw')!;  // WGSL of one kernel
 *
 * Shape letters: B rows (workgroup_id.y of the wide kernels, .x of the per-row ones), V vocabulary,
 * G chunks of CH = 256 E ids per row (a wide kernel's workgroup takes one chunk, E ids per
 * invocation), WV bitmap words per row (V / 32), SW state words per row.
 */
import {PHILOX_WGSL} from './philox';

export const THREADS = 256;
/** Words of per-row state (st). */
export const SW = 16;
/** Words of per-row parameters (params). */
export const PARAM_WORDS = 8;

/** Word offsets in a row's state. */
export const ST = {
  max: 0, // largest key of the row (atomicMax)
  firstInv: 1, // 0xffffffff - first index of the max (atomicMax; greedy rows); 0: none
  kKey: 2, // top-k threshold key (1: keep every token), its prefix during the rounds
  kRemain: 3,
  kDone: 4,
  pPrefix: 5, // top-p cutoff key, its prefix during the rounds
  pRemainLo: 6, // mass still needed from the keys under the prefix (64-bit fixed point)
  pRemainHi: 7,
  cKey: 8, // the top-p cutoff key (0: no top-p)
  ties: 9, // tokens at the cutoff key kept, lowest ids first (0xffffffff: all)
} as const;

export interface SampleShape {
  V: number;
  /** Ids per invocation in a chunk. */
  E: number;
  CH: number;
  G: number;
  WV: number;
  /** A mass m in [0, 1] is m * 2^(32 + SHIFT) in fixed point: V such masses sum below 2^64. */
  SHIFT: number;
}

export function sampleShape(V: number): SampleShape {
  if (!Number.isInteger(V) || V < 1 || V > 2 ** 24) throw new Error(`GPU sampling: vocabulary ${V} out of range`);
  const E = Math.max(1, Math.ceil(V / (THREADS * THREADS)));
  const CH = THREADS * E;
  const SHIFT = 32 - Math.ceil(Math.log2(V + 1));
  return {V, E, CH, G: Math.ceil(V / CH), WV: Math.ceil(V / 32), SHIFT};
}

const storage = (i: number, name: string, type: string, mode: 'read' | 'read_write') =>
  `@group(0) @binding(${i}) var<storage, ${mode}> ${name} : ${type};`;

function common(s: SampleShape): string {
  return /* wgsl */ `
const V : u32 = ${s.V}u;
const WV : u32 = ${s.WV}u;
const E : u32 = ${s.E}u;
const CH : u32 = ${s.CH}u;
const G : u32 = ${s.G}u;
const SW : u32 = ${SW}u;
const SCALE : f32 = ${2 ** s.SHIFT}.0;
struct Params {
  seenRow : u32, seed : u32, step : u32, topK : u32,
  temperature : f32, topPq : u32, minP : f32, penalty : f32,
}
// Order-preserving uint32 of a float: larger float, larger key; -0 is +0; NaN is 0 (never chosen).
fn keyOf(z : f32) -> u32 {
  var b = bitcast<u32>(z);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}
fn zOfKey(k : u32) -> f32 {
  if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }
  return bitcast<f32>(~k);
}
// exp(z - max z): 1 at the max, 0 for NaN. A function of the key only, so equal keys weigh the same.
fn massOf(key : u32, maxKey : u32) -> f32 {
  if (key == 0u) { return 0.0; }
  if (key == maxKey) { return 1.0; }
  return exp(zOfKey(key) - zOfKey(maxKey));
}
// 64-bit unsigned integers as vec2 (x low word, y high word).
fn fixedOf(e : f32) -> vec2<u32> {
  let s = e * SCALE;
  let h = floor(s);
  return vec2<u32>(u32((s - h) * 4294967296.0), u32(h));
}
fn add64(a : vec2<u32>, b : vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}
fn sub64(a : vec2<u32>, b : vec2<u32>) -> vec2<u32> {
  return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}
fn ge64(a : vec2<u32>, b : vec2<u32>) -> bool { return a.y > b.y || (a.y == b.y && a.x >= b.x); }
${PHILOX_WGSL}
// Low 64 bits of a * m.
fn mul64x32(a : vec2<u32>, m : u32) -> vec2<u32> { return vec2<u32>(a.x * m, mulhi(a.x, m) + a.y * m); }
// floor(a * m / 2^32).
fn mulhi64x32(a : vec2<u32>, m : u32) -> vec2<u32> {
  return add64(vec2<u32>(a.y * m, mulhi(a.y, m)), vec2<u32>(mulhi(a.x, m), 0u));
}
// floor(a * m / 2^24) for m <= 2^24.
fn mulshr24(a : vec2<u32>, m : u32) -> vec2<u32> {
  let w0 = a.x * m;
  let w1a = mulhi(a.x, m);
  let w1 = w1a + a.y * m;
  let w2 = mulhi(a.y, m) + select(0u, 1u, w1 < w1a);
  return vec2<u32>((w0 >> 24u) | (w1 << 8u), (w1 >> 24u) | (w2 << 8u));
}
`;
}

/** The logits row after the repetition penalty and the temperature (needs bindings logits and seen). */
const Z_WGSL = /* wgsl */ `
fn zAt(r : u32, i : u32, p : Params) -> f32 {
  var l = logits[r * V + i];
  if (p.penalty != 1.0) {
    let w = seen[p.seenRow * WV + (i >> 5u)];
    if (((w >> (i & 31u)) & 1u) != 0u) {
      if (l > 0.0) { l = l / p.penalty; } else { l = l * p.penalty; }
    }
  }
  if (p.temperature > 0.0 && p.temperature != 1.0) { l = l / p.temperature; }
  return l;
}
// Inside top-k (key >= kKey) and min-p; the top-p cut is applied by the caller.
fn kept(key : u32, kKey : u32, maxKey : u32, minP : f32) -> bool {
  if (key == 0u || key < kKey) { return false; }
  return minP <= 0.0 || massOf(key, maxKey) >= minP;
}
`;

const ENTRY_WIDE = `@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let r = wg.y;
  let p = params[r];
  let base = r * SW;`;

const ENTRY_ROW = `@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let r = wg.x;
  let base = r * SW;`;

/** The loop over an invocation's ids in the chunk of the workgroup: `i` in scope. */
const EACH = (body: string, chunk = 'wg.x') => `
  for (var j = 0u; j < E; j = j + 1u) {
    let i = ${chunk} * CH + t * E + j;
    if (i < V) {
      ${body}
    }
  }`;

const WIDE_IN = (stMode: 'read' | 'atomic') => [
  storage(0, 'logits', 'array<f32>', 'read'),
  storage(1, 'seen', 'array<u32>', 'read'),
  storage(2, 'params', 'array<Params>', 'read'),
  stMode === 'atomic' ? storage(3, 'st', 'array<atomic<u32>>', 'read_write') : storage(3, 'st', 'array<u32>', 'read'),
];

/** Every kernel by name: init, max, first, khist0..3, kpick0..3, phist0..3, ppick0..3, chunk, draw. */
export function sampleKernels(s: SampleShape): Map<string, string> {
  const head = common(s);
  const k = new Map<string, string>();

  k.set(
    'init',
    `${head}
${storage(0, 'st', 'array<u32>', 'read_write')}
${storage(1, 'cnt', 'array<u32>', 'read_write')}
${storage(2, 'mass', 'array<u32>', 'read_write')}
${storage(3, 'picks', 'array<u32>', 'read_write')}
${ENTRY_ROW}
  cnt[r * 256u + t] = 0u;
  mass[2u * (r * 256u + t)] = 0u;
  mass[2u * (r * 256u + t) + 1u] = 0u;
  if (t < SW) {
    var v = 0u;
    if (t == ${ST.kKey}u) { v = 1u; }
    if (t == ${ST.ties}u) { v = 0xffffffffu; }
    st[base + t] = v;
  }
  if (t == 0u) { picks[r] = 0xffffffffu; }
}`,
  );

  k.set(
    'max',
    `${head}
${WIDE_IN('atomic').join('\n')}
${Z_WGSL}
var<workgroup> wmax : atomic<u32>;
${ENTRY_WIDE}
  var m = 0u;
  ${EACH('m = max(m, keyOf(zAt(r, i, p)));')}
  atomicMax(&wmax, m);
  workgroupBarrier();
  if (t == 0u) { atomicMax(&st[base + ${ST.max}u], atomicLoad(&wmax)); }
}`,
  );

  k.set(
    'first',
    `${head}
${WIDE_IN('atomic').join('\n')}
${Z_WGSL}
var<workgroup> wf : atomic<u32>;
${ENTRY_WIDE}
  let mk = atomicLoad(&st[base + ${ST.max}u]);
  if (p.temperature == 0.0 && mk != 0u) {
    ${EACH('if (keyOf(zAt(r, i, p)) == mk) { atomicMax(&wf, 0xffffffffu - i); break; }')}
  }
  workgroupBarrier();
  if (t == 0u) { atomicMax(&st[base + ${ST.firstInv}u], atomicLoad(&wf)); }
}`,
  );

  for (let R = 0; R < 4; R++) {
    const shift = 24 - 8 * R;
    const match = R === 0 ? '' : ` && (key >> ${32 - 8 * R}u) == (pre >> ${32 - 8 * R}u)`;
    k.set(
      `khist${R}`,
      `${head}
${WIDE_IN('read').join('\n')}
${storage(4, 'cnt', 'array<atomic<u32>>', 'read_write')}
${Z_WGSL}
var<workgroup> wc : array<atomic<u32>, 256>;
${ENTRY_WIDE}
  let pre = st[base + ${ST.kKey}u];
  if (p.temperature > 0.0 && p.topK > 0u && st[base + ${ST.kDone}u] == 0u) {
    ${EACH(`let key = keyOf(zAt(r, i, p));
      if (key != 0u${match}) { atomicAdd(&wc[(key >> ${shift}u) & 255u], 1u); }`)}
  }
  workgroupBarrier();
  let c = atomicLoad(&wc[t]);
  if (c != 0u) { atomicAdd(&cnt[r * 256u + t], c); }
}`,
    );
    k.set(
      `kpick${R}`,
      `${head}
${storage(0, 'params', 'array<Params>', 'read')}
${storage(1, 'st', 'array<u32>', 'read_write')}
${storage(2, 'cnt', 'array<u32>', 'read_write')}
var<workgroup> h : array<u32, 256>;
${ENTRY_ROW}
  h[t] = cnt[r * 256u + t];
  cnt[r * 256u + t] = 0u;
  workgroupBarrier();
  let p = params[r];
  if (t == 0u && p.temperature > 0.0 && p.topK > 0u && st[base + ${ST.kDone}u] == 0u) {
    let remain = ${R === 0 ? 'p.topK' : `st[base + ${ST.kRemain}u]`};
    var cum = 0u;
    var d = 256u;
    for (var b = 255i; b >= 0i; b = b - 1i) {
      let c = h[u32(b)];
      if (cum + c >= remain) { d = u32(b); break; }
      cum = cum + c;
    }
    if (d == 256u) {
      st[base + ${ST.kKey}u] = 1u; // fewer tokens than k: all are kept
      st[base + ${ST.kDone}u] = 1u;
    } else {
      st[base + ${ST.kKey}u] = ${R === 0 ? '' : `st[base + ${ST.kKey}u] | `}(d << ${shift}u);
      st[base + ${ST.kRemain}u] = remain - cum;
    }
  }
}`,
    );
    const pmatch = R === 0 ? '' : ` && (key >> ${32 - 8 * R}u) == (pre >> ${32 - 8 * R}u)`;
    k.set(
      `phist${R}`,
      `${head}
${WIDE_IN('read').join('\n')}
${storage(4, 'mass', 'array<atomic<u32>>', 'read_write')}
${Z_WGSL}
var<workgroup> wm : array<atomic<u32>, 512>;
fn wadd(d : u32, q : vec2<u32>) {
  if (q.x != 0u) {
    let old = atomicAdd(&wm[2u * d], q.x);
    if (old + q.x < old) { atomicAdd(&wm[2u * d + 1u], 1u); }
  }
  if (q.y != 0u) { atomicAdd(&wm[2u * d + 1u], q.y); }
}
${ENTRY_WIDE}
  let kk = st[base + ${ST.kKey}u];
  let mk = st[base + ${ST.max}u];
  let pre = st[base + ${ST.pPrefix}u];
  if (p.temperature > 0.0 && p.topPq > 0u) {
    ${EACH(`let key = keyOf(zAt(r, i, p));
      if (key != 0u && key >= kk${pmatch}) { wadd((key >> ${shift}u) & 255u, fixedOf(massOf(key, mk))); }`)}
  }
  workgroupBarrier();
  let lo = atomicLoad(&wm[2u * t]);
  let hi = atomicLoad(&wm[2u * t + 1u]);
  let o = 2u * (r * 256u + t);
  if (lo != 0u) {
    let old = atomicAdd(&mass[o], lo);
    if (old + lo < old) { atomicAdd(&mass[o + 1u], 1u); }
  }
  if (hi != 0u) { atomicAdd(&mass[o + 1u], hi); }
}`,
    );
    k.set(
      `ppick${R}`,
      `${head}
${storage(0, 'params', 'array<Params>', 'read')}
${storage(1, 'st', 'array<u32>', 'read_write')}
${storage(2, 'mass', 'array<u32>', 'read_write')}
var<workgroup> h : array<vec2<u32>, 256>;
// The least m with m * q >= rem (q > 0, m < 2^24): a float estimate from below, then exact steps.
fn ceilDiv(rem : vec2<u32>, q : vec2<u32>) -> u32 {
  let rf = f32(rem.y) * 4294967296.0 + f32(rem.x);
  let qf = f32(q.y) * 4294967296.0 + f32(q.x);
  var m = u32(max(rf / qf - 2.0, 0.0));
  loop {
    if (ge64(mul64x32(q, m), rem)) { break; }
    m = m + 1u;
  }
  return m;
}
${ENTRY_ROW}
  let o = 2u * (r * 256u + t);
  h[t] = vec2<u32>(mass[o], mass[o + 1u]);
  mass[o] = 0u;
  mass[o + 1u] = 0u;
  workgroupBarrier();
  let p = params[r];
  if (t == 0u && p.temperature > 0.0 && p.topPq > 0u) {
    ${
      R === 0
        ? `var z = vec2<u32>(0u, 0u);
    for (var b = 0u; b < 256u; b = b + 1u) { z = add64(z, h[b]); }
    var remain = mulshr24(z, p.topPq); // the mass the nucleus must reach: p of the top-k mass`
        : `var remain = vec2<u32>(st[base + ${ST.pRemainLo}u], st[base + ${ST.pRemainHi}u]);`
    }
    var cum = vec2<u32>(0u, 0u);
    var d = 0u;
    for (var b = 255i; b >= 0i; b = b - 1i) {
      let next = add64(cum, h[u32(b)]);
      if (ge64(next, remain)) { d = u32(b); break; }
      cum = next;
    }
    remain = sub64(remain, cum);
    let pre = ${R === 0 ? '' : `st[base + ${ST.pPrefix}u] | `}(d << ${shift}u);
    st[base + ${ST.pPrefix}u] = pre;
    st[base + ${ST.pRemainLo}u] = remain.x;
    st[base + ${ST.pRemainHi}u] = remain.y;
    ${
      R === 3
        ? `st[base + ${ST.cKey}u] = pre;
    st[base + ${ST.ties}u] = ceilDiv(remain, fixedOf(massOf(pre, st[base + ${ST.max}u])));`
        : ''
    }
  }
}`,
    );
  }

  k.set(
    'chunk',
    `${head}
${WIDE_IN('read').join('\n')}
${storage(4, 'chunks', 'array<u32>', 'read_write')}
${Z_WGSL}
var<workgroup> ws : array<vec2<u32>, 256>;
var<workgroup> wt : array<u32, 256>;
${ENTRY_WIDE}
  var s = vec2<u32>(0u, 0u);
  var ties = 0u;
  if (p.temperature > 0.0) {
    let mk = st[base + ${ST.max}u];
    let kk = st[base + ${ST.kKey}u];
    let ck = st[base + ${ST.cKey}u];
    ${EACH(`let key = keyOf(zAt(r, i, p));
      if (kept(key, kk, mk, p.minP)) {
        if (key > ck) { s = add64(s, fixedOf(massOf(key, mk))); } else if (key == ck) { ties = ties + 1u; }
      }`)}
  }
  ws[t] = s;
  wt[t] = ties;
  workgroupBarrier();
  for (var off = ${THREADS / 2}u; off > 0u; off = off >> 1u) {
    if (t < off) {
      ws[t] = add64(ws[t], ws[t + off]);
      wt[t] = wt[t] + wt[t + off];
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    let o = (r * G + wg.x) * 3u;
    chunks[o] = ws[0].x;
    chunks[o + 1u] = ws[0].y;
    chunks[o + 2u] = wt[0];
  }
}`,
  );

  k.set(
    'draw',
    `${head}
${storage(0, 'logits', 'array<f32>', 'read')}
${storage(1, 'seen', 'array<u32>', 'read_write')}
${storage(2, 'params', 'array<Params>', 'read')}
${storage(3, 'st', 'array<u32>', 'read')}
${storage(4, 'chunks', 'array<u32>', 'read')}
${storage(5, 'picks', 'array<u32>', 'read_write')}
${Z_WGSL}
var<workgroup> cm : array<vec2<u32>, 256>;
var<workgroup> ca : array<u32, 256>;
var<workgroup> info : array<u32, 8>;
fn choose(r : u32, p : Params, id : u32) {
  picks[r] = id;
  let w = p.seenRow * WV + (id >> 5u);
  seen[w] = seen[w] | (1u << (id & 31u));
}
${ENTRY_ROW}
  let p = params[r];
  let mk = st[base + ${ST.max}u];
  let kk = st[base + ${ST.kKey}u];
  let ck = st[base + ${ST.cKey}u];
  var qc = vec2<u32>(0u, 0u);
  if (ck != 0u) { qc = fixedOf(massOf(ck, mk)); }
  // Chunk sums into workgroup memory in parallel (one global load each), then one invocation scans them.
  if (t < G) {
    let o = (r * G + t) * 3u;
    cm[t] = vec2<u32>(chunks[o], chunks[o + 1u]);
    ca[t] = chunks[o + 2u];
  }
  workgroupBarrier();
  if (t == 0u) {
    info[0] = 0u;
    if (p.temperature == 0.0) {
      let f = st[base + ${ST.firstInv}u];
      if (f != 0u) { choose(r, p, 0xffffffffu - f); }
    } else {
      // Chunk masses with the cutoff's ties given out in id order, then the target's chunk.
      var allow = st[base + ${ST.ties}u];
      var total = vec2<u32>(0u, 0u);
      for (var g = 0u; g < G; g = g + 1u) {
        let take = min(ca[g], allow);
        ca[g] = allow;
        allow = allow - take;
        cm[g] = add64(cm[g], mul64x32(qc, take));
        total = add64(total, cm[g]);
      }
      if (total.x != 0u || total.y != 0u) {
        let x = philox(vec4<u32>(p.step, 0u, 0u, 0u), vec2<u32>(p.seed, 0u)).x;
        var tgt = mulhi64x32(total, x); // floor(total * x / 2^32) < total
        var c = 0u;
        for (var g = 0u; g < G; g = g + 1u) {
          if (!ge64(tgt, cm[g])) { c = g; break; }
          tgt = sub64(tgt, cm[g]);
        }
        info[0] = 1u;
        info[1] = c;
        info[2] = tgt.x;
        info[3] = tgt.y;
        info[4] = ca[c];
      }
    }
  }
  workgroupBarrier();
  let valid = info[0] == 1u;
  let c = info[1];
  let tgt = vec2<u32>(info[2], info[3]);
  let allow = info[4];
  // Inside chunk c: each invocation's ties at the cutoff, their prefix, then each invocation's mass.
  var myTies = 0u;
  if (valid) {
    ${EACH(
      `let key = keyOf(zAt(r, i, p));
      if (key == ck && kept(key, kk, mk, p.minP)) { myTies = myTies + 1u; }`,
      'c',
    )}
  }
  workgroupBarrier();
  ca[t] = myTies;
  workgroupBarrier();
  if (t == 0u) {
    var acc = 0u;
    for (var q = 0u; q < ${THREADS}u; q = q + 1u) {
      let n = ca[q];
      ca[q] = acc;
      acc = acc + n;
    }
  }
  workgroupBarrier();
  let tieBase = ca[t];
  var own = vec2<u32>(0u, 0u);
  if (valid) {
    var tie = tieBase;
    ${EACH(
      `let key = keyOf(zAt(r, i, p));
      if (kept(key, kk, mk, p.minP)) {
        if (key > ck) { own = add64(own, fixedOf(massOf(key, mk))); }
        else if (key == ck) { if (tie < allow) { own = add64(own, qc); } tie = tie + 1u; }
      }`,
      'c',
    )}
  }
  cm[t] = own;
  workgroupBarrier();
  if (t == 0u) {
    var acc = vec2<u32>(0u, 0u);
    for (var q = 0u; q < ${THREADS}u; q = q + 1u) {
      let n = cm[q];
      cm[q] = acc;
      acc = add64(acc, n);
    }
  }
  workgroupBarrier();
  let lo = cm[t];
  if (valid && ge64(tgt, lo) && !ge64(tgt, add64(lo, own))) {
    // The target lies in this invocation's ids: the first whose running sum passes it.
    var cum = lo;
    var tie = tieBase;
    var pick = 0xffffffffu;
    ${EACH(
      `let key = keyOf(zAt(r, i, p));
      var m = vec2<u32>(0u, 0u);
      if (kept(key, kk, mk, p.minP)) {
        if (key > ck) { m = fixedOf(massOf(key, mk)); }
        else if (key == ck) { if (tie < allow) { m = qc; } tie = tie + 1u; }
      }
      cum = add64(cum, m);
      if (pick == 0xffffffffu && !ge64(tgt, cum)) { pick = i; }`,
      'c',
    )}
    if (pick != 0xffffffffu) { choose(r, p, pick); }
  }
}`,
  );
  return k;
}

/** A generated source's storage bindings by name, in @binding order. */
export function bindingNames(code: string): string[] {
  const names: string[] = [];
  for (const m of code.matchAll(/@group\(0\) @binding\((\d+)\) var<storage, \w+> (\w+)/g)) {
    if (Number(m[1]) !== names.length) throw new Error(`WGSL bindings out of order at ${m[2]}`);
    names.push(m[2]);
  }
  return names;
}
