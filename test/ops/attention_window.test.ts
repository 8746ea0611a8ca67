/**
 * attendLocal (ops/attention.ts) in blocks against a plain float64 reference written with loops:
 * random q, k, v over several windows, with packed documents (segments), left padding, and a
 * cache of keys before the chunk; gradients against the unblocked attend + attentionBias.
 */
import {attend, attendLocal, attentionBias, queryBlock} from '../../ops/attention';
import {tf} from '../../src/tf';
import {maxAbsDiff, seededUniform} from '../helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

interface Case {
  name: string;
  b: number;
  t: number;
  s: number;
  W: number;
  H: number;
  K: number;
  hd: number;
  /** Per row: [b][s] key validity, [b][t] / [b][s] documents. */
  keyValid?: number[][];
  qSeg?: number[][];
  kSeg?: number[][];
}

function randn(n: number, rnd: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  return out;
}

/** out[b][i][h][:] by the definition: softmax over the visible keys j (p - W <= j <= p, valid, same document). */
function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array): {out: Float64Array; seen: boolean[][]} {
  const {b, t, s, W, H, K, hd} = c;
  const G = H / K,
    off = s - t;
  const out = new Float64Array(b * t * H * hd);
  const seen = Array.from({length: b}, () => new Array<boolean>(t).fill(false));
  for (let r = 0; r < b; r++)
    for (let i = 0; i < t; i++) {
      const p = i + off;
      const vis: number[] = [];
      for (let j = Math.max(0, p - W); j <= p; j++) {
        if (c.keyValid && !c.keyValid[r][j]) continue;
        if (c.qSeg && c.kSeg && c.qSeg[r][i] !== c.kSeg[r][j]) continue;
        vis.push(j);
      }
      if (vis.length === 0) continue; // a padded query: its output is not defined
      seen[r][i] = true;
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / G);
        const sc = vis.map((j) => {
          let dot = 0;
          for (let x = 0; x < hd; x++) dot += q[((r * t + i) * H + h) * hd + x] * k[((r * s + j) * K + kh) * hd + x];
          return dot / Math.sqrt(hd);
        });
        const mx = Math.max(...sc);
        const e = sc.map((z) => Math.exp(z - mx));
        const sum = e.reduce((a, z) => a + z, 0);
        for (let x = 0; x < hd; x++) {
          let acc = 0;
          vis.forEach((j, n) => {
            acc += (e[n] / sum) * v[((r * s + j) * K + kh) * hd + x];
          });
          out[((r * t + i) * H + h) * hd + x] = acc;
        }
      }
    }
  return {out, seen};
}

function cases(): Case[] {
  const docs = (n: number, starts: number[]) => Array.from({length: n}, (_, i) => starts.filter((x) => x <= i).length);
  const out: Case[] = [];
  // W 16: blocks of 128 queries, t 25 windows long.
  const t1 = 400;
  out.push({name: 'W 16, t 400, plain', b: 2, t: t1, s: t1, W: 16, H: 4, K: 2, hd: 8});
  out.push({
    name: 'W 16, t 400, packed documents and left padding',
    b: 2,
    t: t1,
    s: t1,
    W: 16,
    H: 4,
    K: 1,
    hd: 8,
    keyValid: [new Array(t1).fill(1), Array.from({length: t1}, (_, j) => (j < 45 ? 0 : 1))],
    qSeg: [docs(t1, [0, 130, 131, 300]), docs(t1, [45, 250])],
    kSeg: [docs(t1, [0, 130, 131, 300]), docs(t1, [45, 250])],
  });
  // W 200 (a block per window) with a cache of W keys before the chunk, some invalid.
  const t2 = 450,
    W2 = 200,
    s2 = W2 + t2;
  out.push({
    name: 'W 200, t 450 after a cache of 200 keys',
    b: 1,
    t: t2,
    s: s2,
    W: W2,
    H: 2,
    K: 2,
    hd: 8,
    keyValid: [Array.from({length: s2}, (_, j) => (j < 50 ? 0 : 1))],
    qSeg: [docs(t2, [300])],
    kSeg: [[...new Array(W2).fill(0), ...docs(t2, [300])]],
  });
  return out;
}

describe('attendLocal: blocks of queries against their window of keys', () => {
  for (const c of cases()) {
    test(`${c.name}: values as the float64 reference, gradients as the unblocked attention`, () => {
      expect(c.t).toBeGreaterThanOrEqual(2 * queryBlock(c.W)); // the blocked path runs
      const rnd = seededUniform(c.t + c.W);
      const qd = randn(c.b * c.t * c.H * c.hd, rnd),
        kd = randn(c.b * c.s * c.K * c.hd, rnd),
        vd = randn(c.b * c.s * c.K * c.hd, rnd);
      const q = tf.tensor4d(qd, [c.b, c.t, c.H, c.hd]),
        k = tf.tensor4d(kd, [c.b, c.s, c.K, c.hd]),
        v = tf.tensor4d(vd, [c.b, c.s, c.K, c.hd]);
      const valid = c.keyValid ? tf.tensor2d(c.keyValid) : null;
      const qs = c.qSeg ? tf.tensor2d(c.qSeg, undefined, 'int32') : null;
      const ks = c.kSeg ? tf.tensor2d(c.kSeg, undefined, 'int32') : null;

      const {out: ref, seen} = reference(c, qd, kd, vd);
      const got = attendLocal(q, k, v, c.W, valid, qs, ks);
      const g = got.dataSync();
      // Only queries that see something have an output (a padded one's is never used).
      const rows = (x: ArrayLike<number>) => {
        const o: number[] = [];
        for (let r = 0; r < c.b; r++)
          for (let i = 0; i < c.t; i++)
            if (seen[r][i]) for (let z = 0; z < c.H * c.hd; z++) o.push(x[(r * c.t + i) * c.H * c.hd + z]);
        return o;
      };
      expect(maxAbsDiff(rows(g), rows(ref))).toBeLessThan(2e-5);

      // Gradients of a random weighting of the defined outputs, w.r.t. q, k and v.
      const mask = tf.tensor3d(
        seen.flatMap((r) => r.map((x) => (x ? 1 : 0))),
        [c.b, c.t, 1],
      );
      const w = tf.mul(tf.tensor3d(randn(c.b * c.t * c.H * c.hd, rnd), [c.b, c.t, c.H * c.hd]), mask);
      const full = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
        attend(qq, kk, vv, attentionBias(c.b, c.t, c.s, c.W, valid, qs, ks));
      const grads = (f: (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.Tensor) =>
        tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.sum(tf.mul(f(qq, kk, vv), w)))([q, k, v]);
      const blocked = grads((a, b, cc) => attendLocal(a, b, cc, c.W, valid, qs, ks));
      const plain = grads(full);
      for (let i = 0; i < 3; i++) {
        const scale = Math.max(...Array.from(plain[i].dataSync(), Math.abs));
        expect(maxAbsDiff(blocked[i].dataSync(), plain[i].dataSync()) / scale).toBeLessThan(1e-5);
      }
      tf.dispose([q, k, v, got, mask, w, ...blocked, ...plain]);
      tf.dispose([valid, qs, ks].filter((x): x is tf.Tensor => x != null));
    });
  }

  test('memory: no tensor of the t x s scores is made (peak well under one copy of them)', async () => {
    const [b, t, H, hd, W] = [1, 2048, 4, 8, 16];
    const rnd = seededUniform(5);
    const q = tf.tensor4d(randn(b * t * H * hd, rnd), [b, t, H, hd]);
    const k = tf.tensor4d(randn(b * t * hd, rnd), [b, t, 1, hd]);
    const v = tf.tensor4d(randn(b * t * hd, rnd), [b, t, 1, hd]);
    const scoresBytes = 4 * b * H * t * t; // 64 MiB
    const prof = await tf.profile(() => attendLocal(q, k, v, W, null, null, null));
    expect(prof.peakBytes).toBeLessThan(scoresBytes / 8);
    tf.dispose([q, k, v, prof.result as tf.Tensor]);
  });

  test('below two blocks the unblocked path runs unchanged (bit for bit)', () => {
    const rnd = seededUniform(3);
    const [b, t, H, hd, W] = [1, 200, 2, 8, 16];
    const q = tf.tensor4d(randn(b * t * H * hd, rnd), [b, t, H, hd]);
    const k = tf.tensor4d(randn(b * t * hd, rnd), [b, t, 1, hd]);
    const v = tf.tensor4d(randn(b * t * hd, rnd), [b, t, 1, hd]);
    const a = attendLocal(q, k, v, W, null, null, null).dataSync();
    const c = attend(q, k, v, attentionBias(b, t, t, W, null, null, null)).dataSync();
    expect(maxAbsDiff(a, c)).toBe(0);
  });
});
