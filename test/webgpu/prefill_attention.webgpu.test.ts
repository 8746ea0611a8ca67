/**
 * The prefill engine's chunk attention kernels (src/engines/webgpu_prefill/shaders: rope,
 * attention, ring write), run in sequence on SwiftShader, against a plain float64 reference of
 * SPEC.md's attention block written here: RoPE with angle = position * inv_freq, a query at step
 * i sees keys at steps i - W .. i of its own document (a position 0 starts one; the keys before
 * the chunk, in the decode ring, belong to the document running before it and count only where
 * valid), softmax(q k^T / sqrt(hd)) v. The ring after the write is checked against decoding the
 * chunk one token at a time (each key into slot head + j, valid = 1, a position 0 clearing every
 * other slot). Cases: a fresh state, a ring holding a window, t > W, document starts inside the
 * chunk, b = 2, H/K = 2, 1 and 10 (hd 256, the 2B head shape), default and small tiles.
 *
 * Tolerances: attention outputs within 2e-5 + 2e-5 |want| (float32 sums of at most a few dozen
 * terms of size ~1 against float64); rotated ring keys within 1e-5 + 1e-5 |want| (float32 angle
 * and rotation against float64), values copied exactly, validity exactly.
 */

import {
  type AttnTuning,
  attnGrid,
  attnSource,
  attnTuning,
  type ChunkAttnSpec,
} from '../../src/engines/webgpu_prefill/shaders/attention';
import {ringHeadAfter, ringWriteGrid, ringWriteSource} from '../../src/engines/webgpu_prefill/shaders/ring_write';
import {ropeGrid, ropeInvFreq, ropeSource, ropeTable} from '../../src/engines/webgpu_prefill/shaders/rope';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {runKernel} from './kernel_helpers';

const THETA = 10000;

interface Case {
  name: string;
  spec: ChunkAttnSpec;
  b: number;
  t: number;
  /** Positions per batch row. */
  pos: number[][];
  head: number;
  /** Ring validity per batch row and slot. */
  valid: (r: number, slot: number) => number;
  /** Input scale (a larger one makes peaked softmaxes). */
  scale: number;
}

interface Inputs {
  qkv: Float32Array;
  kr: Float32Array;
  vr: Float32Array;
  valid: Float32Array;
}

function inputs(c: Case, seed: number): Inputs {
  const {H, K, HD, W} = c.spec;
  const S = W + 1,
    M = c.b * c.t;
  const rnd = seededUniform(seed);
  const u = (n: number) => Float32Array.from({length: n}, () => c.scale * (2 * rnd() - 1));
  const valid = new Float32Array(c.b * S);
  for (let r = 0; r < c.b; r++) for (let s = 0; s < S; s++) valid[r * S + s] = c.valid(r, s);
  return {qkv: u(M * (H + 2 * K) * HD), kr: u(c.b * S * K * HD), vr: u(c.b * S * K * HD), valid};
}

/** SPEC.md's RoPE of one head (float64). */
function rotate(x: Float32Array, base: number, HD: number, ROT: number, p: number): number[] {
  const out = Array.from({length: HD}, (_, j) => x[base + j]);
  const half = ROT / 2;
  for (let j = 0; j < half; j++) {
    const angle = p / THETA ** ((2 * j) / ROT);
    const c = Math.cos(angle),
      s = Math.sin(angle);
    out[j] = x[base + j] * c - x[base + j + half] * s;
    out[j + half] = x[base + j + half] * c + x[base + j] * s;
  }
  return out;
}

/** The float64 reference: attention outputs [M, H HD], and the ring after decoding the chunk token by token. */
function reference(c: Case, d: Inputs) {
  const {H, K, HD, ROT, W} = c.spec;
  const S = W + 1,
    G = H / K,
    QKV = (H + 2 * K) * HD,
    t = c.t;
  const attn = new Float64Array(c.b * t * H * HD);
  const kr = Float64Array.from(d.kr),
    vr = Float64Array.from(d.vr),
    valid = Float64Array.from(d.valid);
  for (let r = 0; r < c.b; r++) {
    const pos = c.pos[r];
    const row = (j: number) => (r * t + j) * QKV;
    const q = (j: number, h: number) => rotate(d.qkv, row(j) + h * HD, HD, ROT, pos[j]);
    const k = (j: number, kh: number) => rotate(d.qkv, row(j) + (H + kh) * HD, HD, ROT, pos[j]);
    const v = (j: number, kh: number) =>
      Array.from(d.qkv.subarray(row(j) + (H + K + kh) * HD, row(j) + (H + K + kh + 1) * HD));
    // Document index per step: 0 = the document running before the chunk (the ring's).
    const seg: number[] = [];
    pos.forEach((p, j) => seg.push((j > 0 ? seg[j - 1] : 0) + (p === 0 ? 1 : 0)));
    for (let i = 0; i < t; i++) {
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / G);
        const qi = q(i, h);
        const keys: {k: number[]; v: number[]}[] = [];
        for (let dd = W; dd >= 1; dd--) {
          const slot = (((c.head - dd) % S) + S) % S;
          if (seg[i] !== 0 || i + dd > W || d.valid[r * S + slot] === 0) continue;
          const at = ((r * S + slot) * K + kh) * HD;
          keys.push({k: Array.from(d.kr.subarray(at, at + HD)), v: Array.from(d.vr.subarray(at, at + HD))});
        }
        for (let j = Math.max(0, i - W); j <= i; j++) if (seg[j] === seg[i]) keys.push({k: k(j, kh), v: v(j, kh)});
        const scores = keys.map((key) => key.k.reduce((acc, x, n) => acc + x * qi[n], 0) / Math.sqrt(HD));
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let n = 0; n < HD; n++) {
          attn[((r * t + i) * H + h) * HD + n] = keys.reduce((acc, key, x) => acc + (e[x] / sum) * key.v[n], 0);
        }
      }
    }
    // Decoding the chunk one token at a time.
    for (let j = 0; j < t; j++) {
      const slot = (c.head + j) % S;
      for (let kh = 0; kh < K; kh++) {
        const at = ((r * S + slot) * K + kh) * HD;
        kr.set(k(j, kh), at);
        vr.set(v(j, kh), at);
      }
      if (pos[j] === 0) for (let s = 0; s < S; s++) valid[r * S + s] = 0;
      valid[r * S + slot] = 1;
    }
  }
  return {attn, kr, vr, valid, head: (c.head + t) % S};
}

async function runChain(c: Case, d: Inputs, tuning?: Partial<AttnTuning>) {
  const {spec, b, t} = c;
  const M = b * t;
  const device = (tf.backend() as unknown as {device: GPUDevice}).device;
  const tn = attnTuning(spec, device.limits, tuning);
  const dims = Uint32Array.from([M, t, c.head, 0]);
  const pos = Uint32Array.from(c.pos.flat());
  const table = ropeTable(c.pos.flat(), ropeInvFreq(spec.ROT, THETA), spec.ROT);
  const [, , qkv] = await runKernel(ropeSource(spec), [dims, table, d.qkv], ropeGrid(M));
  const attn0 = new Float32Array(M * spec.H * spec.HD).fill(Number.NaN);
  const [, , , , , , attn] = await runKernel(
    attnSource(spec, tn),
    [dims, qkv, pos, d.kr, d.vr, d.valid, attn0],
    attnGrid(spec, M, t, tn),
  );
  const [, , , kr, vr, valid] = await runKernel(
    ringWriteSource(spec),
    [dims, qkv, pos, d.kr, d.vr, d.valid],
    ringWriteGrid(spec, M, t),
  );
  return {attn, kr, vr, valid, head: ringHeadAfter(c.head, t, spec.W)};
}

/** The largest |got - want| beyond atol + rtol |want| (0 when all are within), NaN counting as a miss. */
function excess(got: Float32Array, want: Float64Array, atol: number, rtol: number): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= atol + rtol * Math.abs(want[i]))) worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
  }
  return worst;
}

const range = (a: number, n: number) => Array.from({length: n}, (_, j) => a + j);

const CASES: Case[] = [
  {
    name: 'fresh state (every ring slot invalid), H/K 2, partial rotary',
    spec: {H: 2, K: 1, HD: 16, ROT: 8, W: 8},
    b: 1,
    t: 5,
    pos: [range(0, 5)],
    head: 8,
    valid: () => 0,
    scale: 1,
  },
  {
    name: 'a ring holding a full window, b 2, H/K 2 with 2 kv heads',
    spec: {H: 4, K: 2, HD: 8, ROT: 8, W: 8},
    b: 2,
    t: 6,
    pos: [range(20, 6), range(11, 6)],
    head: 3,
    valid: () => 1,
    scale: 1.5,
  },
  {
    name: 't > W with a partly valid ring (its 5 newest slots)',
    spec: {H: 2, K: 1, HD: 16, ROT: 8, W: 8},
    b: 1,
    t: 20,
    pos: [range(5, 20)],
    head: 6,
    valid: (_r, s) => ((6 - s + 9) % 9 >= 1 && (6 - s + 9) % 9 <= 5 ? 1 : 0),
    scale: 1,
  },
  {
    name: 'document starts inside the chunk, b 2, H/K 1, head dim 12 (ragged tiles)',
    spec: {H: 2, K: 2, HD: 12, ROT: 6, W: 8},
    b: 2,
    t: 20,
    pos: [
      [...range(30, 7), ...range(0, 13)],
      [...range(0, 12), ...range(0, 8)],
    ],
    head: 0,
    valid: () => 1,
    scale: 2,
  },
  {
    name: 'one step per row (t 1), b 2, row 1 starting a document, W 4',
    spec: {H: 2, K: 1, HD: 8, ROT: 4, W: 4},
    b: 2,
    t: 1,
    pos: [[9], [0]],
    head: 2,
    valid: (r, s) => (r === 0 && s === 0 ? 0 : 1),
    scale: 1,
  },
  {
    name: 'the 2B head shape (H 10, K 1, hd 256, rot 128), W 16, t 40, full ring',
    spec: {H: 10, K: 1, HD: 256, ROT: 128, W: 16},
    b: 1,
    t: 40,
    pos: [range(100, 40)],
    head: 9,
    valid: () => 1,
    scale: 0.5,
  },
];

/** Default tiles, then small ones (many key tiles, rows padded, head dims split unevenly). */
const tuningsFor = (HD: number): (Partial<AttnTuning> | undefined)[] =>
  HD > 64
    ? [undefined, {QT: 3, RM: 4, TC: 8, CM: 2, DC: 16, KV: 4}]
    : [undefined, {QT: 3, RM: 2, TC: 4, CM: 2, DC: 4, KV: 2}, {QT: 1, RM: 1, TC: 2, CM: 1, DC: HD % 8 ? HD : 8, KV: 1}];

describeWebGPU('prefill chunk attention kernels on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  for (const [n, c] of CASES.entries()) {
    for (const tuning of tuningsFor(c.spec.HD)) {
      const label = tuning
        ? Object.entries(tuning)
            .map(([k, v]) => `${k}${v}`)
            .join(' ')
        : 'default tiles';
      test(`${c.name}; ${label}`, async () => {
        const d = inputs(c, 100 + n);
        const want = reference(c, d);
        const got = await runChain(c, d, tuning);
        expect(excess(got.attn, want.attn, 2e-5, 2e-5)).toBe(0);
        expect(Array.from(got.valid)).toEqual(Array.from(want.valid));
        expect(excess(got.kr, want.kr, 1e-5, 1e-5)).toBe(0);
        expect(Array.from(got.vr)).toEqual(Array.from(Float32Array.from(want.vr)));
        expect(got.head).toBe(want.head);
      });
    }
  }
});
