/**
 * Every layer against a naive float64 implementation of SPEC.md written here with plain loops,
 * on random inputs and random weights; sqrtBoundDerivative's gradient; tfjs serialization.
 *
 * Shape letters: b batch, t time, d hidden_size, e lru_width, H heads, K key/value heads,
 * hd head_dim, w conv1d_width, W attention_window_size, m intermediate_size / 2.
 */

import {LocalAttentionBlock} from '../../layers/attention';
import {GriffinLayer} from '../../layers/base';
import {Linear, MLPBlock, RMSNorm} from '../../layers/basic';
import {Embedding, LMHead, ResidualBlock} from '../../layers/model_layers';
import {Conv1D, RecurrentBlock, RGLRU} from '../../layers/recurrent';
import {sqrtBoundDerivative} from '../../ops/activations';
import {disposeSequenceInfo, SequenceInfo, sequenceInfo} from '../../ops/sequence';
import {RecurrentGemmaConfig} from '../../src/config';
import {tf} from '../../src/tf';
import {maxAbsDiff, relError, seededUniform} from '../helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

// d = 32, e = 24 (different from d, so a mix-up of the two shows), H = 4 (RG-LRU blocks of 6,
// head_dim 8 with 4 rotated channels), K = 2, m = 20, w = 4, W = 3.
const CFG = new RecurrentGemmaConfig({
  num_hidden_layers: 3,
  vocab_size: 50,
  hidden_size: 32,
  intermediate_size: 40,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  lru_width: 24,
  attention_window_size: 3,
  conv1d_width: 4,
  rope_theta: 100,
  block_types: ['recurrent', 'attention'],
});
const B = 2,
  T = 10;
const TOL = 1e-5; // relative error of float32 against the float64 reference

// ---------------------------------------------------------------------------------------------
// Plain arrays and the float64 reference

type A1 = number[];
type A2 = number[][];
type A3 = number[][][];

function randArr(rng: () => number, shape: number[], scale = 1): any {
  if (shape.length === 0) return (2 * rng() - 1) * scale;
  return Array.from({length: shape[0]}, () => randArr(rng, shape.slice(1), scale));
}
const flat = (a: any): number[] => (Array.isArray(a) ? a.flatMap(flat) : [a]);
const shapeOf = (a: any): number[] => (Array.isArray(a) ? [a.length, ...shapeOf(a[0])] : []);
const toT = (a: any) => tf.tensor(flat(a), shapeOf(a), 'float32');

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const softplus = (v: number) => Math.log1p(Math.exp(v));
const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** y = x W^T + b, W [out, in]. */
function nLinear(x: A1, w: A2, b?: A1): A1 {
  return w.map((row, o) => row.reduce((s, wi, i) => s + wi * x[i], b ? b[o] : 0));
}
const map3 = (x: A3, f: (v: A1, bi: number, ti: number) => A1): A3 => x.map((r, bi) => r.map((v, ti) => f(v, bi, ti)));

function nRmsNorm(x: A1, g: A1, eps: number): A1 {
  const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
  return x.map((v, i) => (v / Math.sqrt(ms + eps)) * (1 + g[i]));
}

interface NSeq {
  positions: A2;
  mask: A2;
}
/** Position ids and mask as sequenceInfo would default them, or as given. */
function nSeq(b: number, t: number, positionIds?: A2, mask?: A2): NSeq {
  const m = mask ?? Array.from({length: b}, () => Array(t).fill(1));
  let positions = positionIds;
  if (positions == null) {
    positions = m.map((row) => {
      let c = -1;
      return row.map((v) => Math.max((c += v), 0));
    });
  }
  return {positions, mask: m};
}
const isReset = (s: NSeq, bi: number, ti: number) => s.positions[bi][ti] === 0 && s.mask[bi][ti] === 1;
/** Document index of each step: number of resets up to and including it. */
function nSegments(s: NSeq): A2 {
  return s.positions.map((row, bi) => {
    let c = 0;
    return row.map((_, ti) => (c += isReset(s, bi, ti) ? 1 : 0));
  });
}

/** Causal depthwise conv; state [b, w-1, e] holds the inputs before step 0, oldest first. */
function nConv(u: A3, weight: A3, bias: A1, s: NSeq, state?: A3): A3 {
  const w = weight[0][0].length;
  const seg = nSegments(s);
  return map3(u, (_, bi, ti) =>
    bias.map((bc, c) => {
      let acc = bc;
      for (let k = 0; k < w; k++) {
        const src = ti - (w - 1) + k;
        const srcSeg = src < 0 ? 0 : seg[bi][src];
        if (srcSeg !== seg[bi][ti]) continue; // never read across a document start
        const v = src < 0 ? (state ? state[bi][w - 1 + src][c] : 0) : u[bi][src][c] * s.mask[bi][src];
        acc += weight[c][0][k] * v;
      }
      return acc;
    }),
  );
}

interface LruParams {
  recurrent_param: A1;
  input_gate_weight: A3;
  input_gate_bias: A2;
  recurrent_gate_weight: A3;
  recurrent_gate_bias: A2;
}

function nBlockDiag(x: A1, w: A3, bias: A2): A1 {
  const H = w.length,
    bw = w[0].length;
  const y: A1 = [];
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < bw; j++) {
      let acc = bias[h][j];
      for (let i = 0; i < bw; i++) acc += x[h * bw + i] * w[h][i][j];
      y.push(acc);
    }
  }
  return y;
}

function nRgLru(u: A3, p: LruParams, s: NSeq, h0?: A2): {y: A3; hLast: A2} {
  const e = u[0][0].length;
  const hLast: A2 = [];
  const y = u.map((row, bi) => {
    let h = h0 ? [...h0[bi]] : Array(e).fill(0);
    const out = row.map((x, ti) => {
      const gx = nBlockDiag(x, p.input_gate_weight, p.input_gate_bias).map(sigmoid);
      const ga = nBlockDiag(x, p.recurrent_gate_weight, p.recurrent_gate_bias).map(sigmoid);
      h = h.map((hc, c) => {
        const logA = -8 * ga[c] * softplus(p.recurrent_param[c]);
        let a = Math.exp(logA);
        let mult = Math.sqrt(1 - Math.exp(2 * logA));
        if (isReset(s, bi, ti)) {
          a = 0;
          mult = 1;
        }
        if (s.mask[bi][ti] === 0) return hc; // padding leaves the state untouched
        return a * hc + x[c] * gx[c] * mult;
      });
      return [...h];
    });
    hLast.push(h);
    return out;
  });
  return {y, hLast};
}

type Lin = {weight: A2; bias?: A1};
const nLin = (x: A3, l: Lin) => map3(x, (v) => nLinear(v, l.weight, l.bias));

function nMlp(x: A3, p: {gate: Lin; up: Lin; down: Lin}): A3 {
  return map3(x, (v) => {
    const g = nLinear(v, p.gate.weight, p.gate.bias).map(gelu);
    const u = nLinear(v, p.up.weight, p.up.bias);
    return nLinear(
      g.map((gi, i) => gi * u[i]),
      p.down.weight,
      p.down.bias,
    );
  });
}

function nRecurrentBlock(
  x: A3,
  p: {linear_x: Lin; linear_y: Lin; linear_out: Lin; conv_w: A3; conv_b: A1; lru: LruParams},
  s: NSeq,
): A3 {
  const y = map3(nLin(x, p.linear_y), (v) => v.map(gelu));
  const u = nConv(nLin(x, p.linear_x), p.conv_w, p.conv_b, s);
  const r = nRgLru(u, p.lru, s).y;
  return nLin(
    map3(r, (v, bi, ti) => v.map((rc, c) => rc * y[bi][ti][c])),
    p.linear_out,
  );
}

/** RoPE on the first `rot` channels of one head vector. */
function nRope(v: A1, pos: number, rot: number, theta: number): A1 {
  const half = rot / 2;
  const out = [...v];
  for (let j = 0; j < half; j++) {
    const ang = pos / theta ** ((2 * j) / rot);
    const p1 = v[j],
      p2 = v[j + half];
    out[j] = p1 * Math.cos(ang) - p2 * Math.sin(ang);
    out[j + half] = p2 * Math.cos(ang) + p1 * Math.sin(ang);
  }
  return out;
}

function nAttention(
  x: A3,
  p: {q: Lin; k: Lin; v: Lin; o: Lin},
  c: RecurrentGemmaConfig,
  s: NSeq,
  kvHead = (h: number) => Math.floor(h / (c.num_attention_heads / c.num_key_value_heads)),
): A3 {
  const H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim,
    W = c.attention_window_size;
  const seg = nSegments(s);
  const heads = (v: A1, n: number) => Array.from({length: n}, (_, h) => v.slice(h * hd, (h + 1) * hd));
  return x.map((row, bi) => {
    const q = row.map((v, ti) =>
      heads(nLinear(v, p.q.weight, p.q.bias), H).map((z) => nRope(z, s.positions[bi][ti], c.rotary_dim, c.rope_theta)),
    );
    const k = row.map((v, ti) =>
      heads(nLinear(v, p.k.weight, p.k.bias), K).map((z) => nRope(z, s.positions[bi][ti], c.rotary_dim, c.rope_theta)),
    );
    const vv = row.map((v) => heads(nLinear(v, p.v.weight, p.v.bias), K));
    return row.map((_, i) => {
      const out: A1 = [];
      for (let h = 0; h < H; h++) {
        const kh = kvHead(h);
        const js: number[] = [];
        for (let j = Math.max(0, i - W); j <= i; j++) if (seg[bi][j] === seg[bi][i] && s.mask[bi][j] === 1) js.push(j);
        const sc = js.map((j) => q[i][h].reduce((acc, qv, d) => acc + qv * k[j][kh][d], 0) / Math.sqrt(hd));
        const mx = Math.max(...sc);
        const ex = sc.map((v) => Math.exp(v - mx));
        const z = ex.reduce((a, b) => a + b, 0);
        for (let d = 0; d < hd; d++) out.push(js.reduce((acc, j, n) => acc + (ex[n] / z) * vv[j][kh][d], 0));
      }
      return nLinear(out, p.o.weight, p.o.bias);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Layers with random weights

/** Builds `layer` for input [b, t, inDim] and fills every parameter with random values. */
function randomize(layer: GriffinLayer, inShape: number[], seed: number, scale = 0.5): Map<string, any> {
  if (!layer.built) layer.build(inShape);
  const rng = seededUniform(seed);
  const values = new Map<string, any>();
  for (const [name, v] of layer.namedParams()) {
    const a = randArr(rng, v.shape as number[], scale);
    const t = toT(a);
    v.write(t);
    t.dispose();
    values.set(name, a);
  }
  return values;
}
const lin = (p: Map<string, any>, name: string): Lin => {
  const pre = name === '' ? '' : `${name}.`;
  return {weight: p.get(`${pre}weight`), bias: p.get(`${pre}bias`)};
};

function compare(got: tf.Tensor, want: any, tol = TOL): void {
  expect(got.shape).toEqual(shapeOf(want));
  const err = relError(got.dataSync(), flat(want));
  expect(err).toBeLessThan(tol);
}

/** Compares only the steps where mask is 1. */
function compareReal(got: tf.Tensor, want: A3, mask: A2, tol = TOL): void {
  const g = got.arraySync() as A3;
  const a: number[] = [],
    b: number[] = [];
  mask.forEach((row, bi) =>
    row.forEach((m, ti) => {
      if (m) {
        a.push(...g[bi][ti]);
        b.push(...want[bi][ti]);
      }
    }),
  );
  expect(relError(a, b)).toBeLessThan(tol);
}

function withSeq<T>(
  b: number,
  t: number,
  opts: {positionIds?: A2; attentionMask?: A2},
  fn: (info: SequenceInfo) => T,
): T {
  const info = sequenceInfo(b, t, opts);
  try {
    return fn(info);
  } finally {
    disposeSequenceInfo(info);
  }
}

let numTensorsBefore = 0;
beforeEach(() => {
  numTensorsBefore = tf.memory().numTensors;
});

// ---------------------------------------------------------------------------------------------

describe('RMSNorm', () => {
  test('x * rsqrt(mean(x^2) + eps) * (1 + weight)', () => {
    const layer = new RMSNorm({config: CFG});
    const p = randomize(layer, [B, T, 32], 1);
    const x = randArr(seededUniform(2), [B, T, 32], 3);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(
      y,
      map3(x, (v) => nRmsNorm(v, p.get('weight'), CFG.rms_norm_eps)),
    );
    // The 1 + g matters: with g = 0 the output is the plain normalised input, not zero.
    layer.weight.write(tf.zeros([32]));
    const y0 = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(
      y0,
      map3(x, (v) => nRmsNorm(v, Array(32).fill(0), CFG.rms_norm_eps)),
    );
    expect(Math.max(...flat(y0.arraySync()).map(Math.abs))).toBeGreaterThan(0.5);
    tf.dispose([y, y0]);
  });

  test('dim other than hidden_size', () => {
    const layer = new RMSNorm({config: CFG, dim: 24});
    const p = randomize(layer, [B, T, 24], 3);
    const x = randArr(seededUniform(4), [B, T, 24]);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(
      y,
      map3(x, (v) => nRmsNorm(v, p.get('weight'), CFG.rms_norm_eps)),
    );
    y.dispose();
  });
});

describe('Linear and MLPBlock', () => {
  test('Linear: y = x W^T + b with W [out, in]', () => {
    const layer = new Linear({config: CFG, inFeatures: 32, outFeatures: 7, bias: true});
    const p = randomize(layer, [B, T, 32], 5);
    expect(layer.weight.shape).toEqual([7, 32]);
    const x = randArr(seededUniform(6), [B, T, 32]);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(y, nLin(x, lin(p, '')));
    y.dispose();
  });

  test('MLPBlock: down(gelu_tanh(gate(x)) * up(x)), width intermediate_size / 2', () => {
    const layer = new MLPBlock({config: CFG});
    const p = randomize(layer, [B, T, 32], 7);
    expect(p.get('gate_proj.weight').length).toBe(20);
    expect(p.get('down_proj.weight').length).toBe(32);
    const x = randArr(seededUniform(8), [B, T, 32], 2);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(y, nMlp(x, {gate: lin(p, 'gate_proj'), up: lin(p, 'up_proj'), down: lin(p, 'down_proj')}));
    y.dispose();
  });
});

describe('Conv1D (causal depthwise)', () => {
  const e = CFG.lru_width,
    w = CFG.conv1d_width;

  test('one document per row, no state: u before t = 0 is 0', () => {
    const layer = new Conv1D({config: CFG});
    const p = randomize(layer, [B, T, e], 9);
    expect(p.get('weight').length).toBe(e);
    const u = randArr(seededUniform(10), [B, T, e]);
    const y = tf.tidy(() => layer.apply(toT(u)) as tf.Tensor);
    compare(y, nConv(u, p.get('weight'), p.get('bias'), nSeq(B, T)));
    // Hand check of one entry: step 1, channel 0 reads u[0] and u[1] through taps w-2 and w-1.
    const W0 = p.get('weight')[0][0];
    const want = p.get('bias')[0] + W0[w - 2] * u[0][0][0] + W0[w - 1] * u[0][1][0];
    expect(Math.abs((y.arraySync() as A3)[0][1][0] - want)).toBeLessThan(1e-5);
    y.dispose();
  });

  test('carried state and document starts given by positionIds', () => {
    const layer = new Conv1D({config: CFG});
    const p = randomize(layer, [B, T, e], 11);
    const u = randArr(seededUniform(12), [B, T, e]);
    const state = randArr(seededUniform(13), [B, w - 1, e]);
    // Row 0 continues a document (reads the state), then a new one starts at step 5.
    // Row 1 starts a document at step 0 (must ignore the state) and another at step 2.
    const positionIds = [
      [7, 8, 9, 10, 11, 0, 1, 2, 3, 4],
      [0, 1, 0, 1, 2, 3, 4, 5, 6, 7],
    ];
    const {y, st} = withSeq(B, T, {positionIds}, (info) =>
      tf.tidy(() => {
        const r = layer.forwardWithState(toT(u), info, toT(state));
        return {y: r.y, st: r.state};
      }),
    );
    const want = nConv(u, p.get('weight'), p.get('bias'), nSeq(B, T, positionIds), state);
    compare(y, want);
    // The new state is the last w-1 inputs.
    compare(
      st,
      u.map((row: A2) => row.slice(T - (w - 1))),
      1e-7,
    );
    // Against an unpacked run: row 0's second document equals a fresh run of its own steps.
    const alone = tf.tidy(() => layer.apply(toT([u[0].slice(5)])) as tf.Tensor);
    expect(maxAbsDiff(alone.dataSync(), flat((y.arraySync() as A3)[0].slice(5)))).toBeLessThan(1e-6);
    tf.dispose([y, st, alone]);
  });

  test('padding (attentionMask 0) is zeroed before the convolution', () => {
    const layer = new Conv1D({config: CFG});
    const p = randomize(layer, [B, T, e], 14);
    const u = randArr(seededUniform(15), [B, T, e], 5);
    const attentionMask = [
      [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    ];
    const y = withSeq(B, T, {attentionMask}, (info) => tf.tidy(() => layer.forwardWithState(toT(u), info).y));
    compareReal(y, nConv(u, p.get('weight'), p.get('bias'), nSeq(B, T, undefined, attentionMask)), attentionMask);
    y.dispose();
  });
});

describe('RGLRU', () => {
  const e = CFG.lru_width,
    H = CFG.num_attention_heads;
  const params = (p: Map<string, any>): LruParams => ({
    recurrent_param: p.get('recurrent_param'),
    input_gate_weight: p.get('input_gate_weight'),
    input_gate_bias: p.get('input_gate_bias'),
    recurrent_gate_weight: p.get('recurrent_gate_weight'),
    recurrent_gate_bias: p.get('recurrent_gate_bias'),
  });

  test('parameter shapes', () => {
    const layer = new RGLRU({config: CFG});
    const p = randomize(layer, [B, T, e], 16);
    expect(shapeOf(p.get('input_gate_weight'))).toEqual([H, e / H, e / H]);
    expect(shapeOf(p.get('recurrent_gate_bias'))).toEqual([H, e / H]);
    expect(shapeOf(p.get('recurrent_param'))).toEqual([e]);
  });

  test('gates, -8 gate_a softplus(param), sqrt(1 - a^2), reset at position 0', () => {
    const layer = new RGLRU({config: CFG});
    const p = randomize(layer, [B, T, e], 17, 1);
    const u = randArr(seededUniform(18), [B, T, e], 2);
    const y = tf.tidy(() => layer.apply(toT(u)) as tf.Tensor);
    const want = nRgLru(u, params(p), nSeq(B, T)).y;
    compare(y, want);
    // Step 0 is a document start: a = 0, mult = 1, so h_0 = u_0 * gate_x exactly.
    const gx = nBlockDiag(u[1][0], p.get('input_gate_weight'), p.get('input_gate_bias')).map(sigmoid);
    const h0 = (y.arraySync() as A3)[1][0];
    expect(
      maxAbsDiff(
        h0,
        u[1][0].map((v: number, c: number) => v * gx[c]),
      ),
    ).toBeLessThan(1e-5);
    y.dispose();
  });

  test('carried state, packed documents and padding', () => {
    const layer = new RGLRU({config: CFG});
    const p = randomize(layer, [B, T, e], 19, 1);
    const u = randArr(seededUniform(20), [B, T, e], 2);
    const hPrev = randArr(seededUniform(21), [B, e], 3);
    // Row 0 continues the carried document, then restarts at step 4; row 1 restarts at 0 and 6.
    const positionIds = [
      [5, 6, 7, 8, 0, 1, 2, 3, 4, 5],
      [0, 1, 2, 3, 4, 5, 0, 1, 2, 3],
    ];
    const s = nSeq(B, T, positionIds);
    const {y, hLast} = withSeq(B, T, {positionIds}, (info) =>
      tf.tidy(() => layer.forwardWithState(toT(u), info, toT(hPrev))),
    );
    const want = nRgLru(u, params(p), s, hPrev);
    compare(y, want.y);
    compare(hLast, want.hLast);
    tf.dispose([y, hLast]);

    // Padding keeps the state: a right-padded row's last state is its last real step's.
    const attentionMask = [
      [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
      [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
    ];
    const r = withSeq(B, T, {attentionMask}, (info) => tf.tidy(() => layer.forwardWithState(toT(u), info)));
    const wantM = nRgLru(u, params(p), nSeq(B, T, undefined, attentionMask));
    compareReal(r.y, wantM.y, attentionMask);
    compare(r.hLast, wantM.hLast);
    expect(maxAbsDiff(r.hLast.dataSync().slice(0, e), (r.y.arraySync() as A3)[0][6])).toBe(0);
    tf.dispose([r.y, r.hLast]);
  });
});

describe('RecurrentBlock', () => {
  test('linear_out(rg_lru(conv(linear_x(x))) * gelu(linear_y(x)))', () => {
    const layer = new RecurrentBlock({config: CFG});
    const p = randomize(layer, [B, T, 32], 22, 0.4);
    const x = randArr(seededUniform(23), [B, T, 32], 2);
    const params = {
      linear_x: lin(p, 'linear_x'),
      linear_y: lin(p, 'linear_y'),
      linear_out: lin(p, 'linear_out'),
      conv_w: p.get('conv_1d.weight'),
      conv_b: p.get('conv_1d.bias'),
      lru: {
        recurrent_param: p.get('rg_lru.recurrent_param'),
        input_gate_weight: p.get('rg_lru.input_gate_weight'),
        input_gate_bias: p.get('rg_lru.input_gate_bias'),
        recurrent_gate_weight: p.get('rg_lru.recurrent_gate_weight'),
        recurrent_gate_bias: p.get('rg_lru.recurrent_gate_bias'),
      },
    };
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(y, nRecurrentBlock(x, params, nSeq(B, T)));
    const positionIds = [
      [0, 1, 2, 3, 4, 5, 0, 1, 2, 3],
      [0, 1, 0, 1, 2, 3, 4, 5, 6, 7],
    ];
    const yp = withSeq(B, T, {positionIds}, (info) => tf.tidy(() => layer.apply(toT(x), {info}) as tf.Tensor));
    compare(yp, nRecurrentBlock(x, params, nSeq(B, T, positionIds)));
    tf.dispose([y, yp]);
    expect(tf.memory().numTensors).toBe(numTensorsBefore + layer.weights.length);
  });
});

describe('LocalAttentionBlock (H = 4, K = 2, W = 3, t = 10)', () => {
  function setup(seed: number) {
    const layer = new LocalAttentionBlock({config: CFG});
    const p = randomize(layer, [B, T, 32], seed, 0.5);
    const params = {q: lin(p, 'q_proj'), k: lin(p, 'k_proj'), v: lin(p, 'v_proj'), o: lin(p, 'o_proj')};
    return {layer, p, params};
  }

  test('weights: no q/k/v bias, o_proj with bias, K*hd key width', () => {
    const {p} = setup(24);
    expect(shapeOf(p.get('q_proj.weight'))).toEqual([32, 32]);
    expect(shapeOf(p.get('k_proj.weight'))).toEqual([16, 32]);
    expect(shapeOf(p.get('v_proj.weight'))).toEqual([16, 32]);
    expect(p.has('q_proj.bias')).toBe(false);
    expect(shapeOf(p.get('o_proj.bias'))).toEqual([32]);
  });

  test('GQA, partial RoPE and the window i - W <= j <= i', () => {
    const {layer, params} = setup(25);
    const x = randArr(seededUniform(26), [B, T, 32], 2);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    compare(y, nAttention(x, params, CFG, nSeq(B, T)));
    y.dispose();
  });

  test('the reference really depends on the window, RoPE and the head grouping', () => {
    // Guards the test itself: a wrong window, no RoPE or K = H grouping must change the output.
    const {layer, params} = setup(27);
    const x = randArr(seededUniform(28), [B, T, 32], 2);
    const y = tf.tidy(() => layer.apply(toT(x)) as tf.Tensor);
    const wide = RecurrentGemmaConfig.fromJSON({...CFG.toJSON(), attention_window_size: 4});
    const wider = nAttention(x, params, wide, nSeq(B, T));
    expect(relError(y.dataSync(), flat(wider))).toBeGreaterThan(1e-3);
    const noRope = nAttention(x, params, CFG, nSeq(B, T, [Array(T).fill(0), Array(T).fill(0)]));
    expect(relError(y.dataSync(), flat(noRope))).toBeGreaterThan(1e-3);
    const interleaved = nAttention(x, params, CFG, nSeq(B, T), (h) => h % CFG.num_key_value_heads);
    expect(relError(y.dataSync(), flat(interleaved))).toBeGreaterThan(1e-3);
    y.dispose();
  });

  test('packed documents: no attention across the boundary, RoPE by position in the document', () => {
    const {layer, params} = setup(29);
    const x = randArr(seededUniform(30), [B, T, 32], 2);
    const positionIds = [
      [0, 1, 2, 3, 0, 1, 2, 3, 4, 5],
      [0, 1, 2, 3, 4, 5, 6, 7, 0, 1],
    ];
    const y = withSeq(B, T, {positionIds}, (info) => tf.tidy(() => layer.forwardWithState(toT(x), info).y));
    compare(y, nAttention(x, params, CFG, nSeq(B, T, positionIds)));
    y.dispose();
  });

  test('padding is masked', () => {
    const {layer, params} = setup(31);
    const x = randArr(seededUniform(32), [B, T, 32], 2);
    const attentionMask = [
      [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 0, 0, 1, 1],
    ];
    const y = withSeq(B, T, {attentionMask}, (info) => tf.tidy(() => layer.forwardWithState(toT(x), info).y));
    compareReal(y, nAttention(x, params, CFG, nSeq(B, T, undefined, attentionMask)), attentionMask);
    y.dispose();
  });
});

describe('Embedding, LMHead, ResidualBlock', () => {
  test('embedding scale is sqrt(d) rounded to bfloat16', () => {
    expect(new Embedding({config: CFG}).scale).toBe(5.65625); // sqrt(32) = 5.65685...
    expect(new Embedding({config: new RecurrentGemmaConfig()}).scale).toBe(50.5); // sqrt(2560) = 50.596...
    expect(new Embedding({config: {hidden_size: 64, num_attention_heads: 4}}).scale).toBe(8);
  });

  test('embed and tied / untied soft-capped logits', () => {
    const emb = new Embedding({config: CFG});
    const pe = randomize(emb, [B, T], 33, 1);
    const E: A2 = pe.get('weight');
    const ids = [
      [0, 5, 49, 7, 7, 3, 2, 1, 8, 9],
      [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    ];
    const x = tf.tidy(() => emb.apply(tf.tensor2d(ids, undefined, 'int32')) as tf.Tensor);
    compare(
      x,
      ids.map((r) => r.map((id) => E[id].map((v) => v * 5.65625))),
    );
    const h = randArr(seededUniform(34), [B, T, 32], 3);
    const cap = CFG.logits_soft_cap;
    const logits = tf.tidy(() => emb.apply(toT(h)) as tf.Tensor);
    const want = map3(h, (v) => nLinear(v, E).map((l) => cap * Math.tanh(l / cap)));
    compare(logits, want);
    expect(Math.max(...flat(want).map(Math.abs))).toBeGreaterThan(cap / 2); // the cap is exercised
    const head = new LMHead({config: CFG});
    const ph = randomize(head, [B, T, 32], 35, 1);
    const l2 = tf.tidy(() => head.apply(toT(h)) as tf.Tensor);
    compare(
      l2,
      map3(h, (v) => nLinear(v, ph.get('weight')).map((l) => cap * Math.tanh(l / cap))),
    );
    tf.dispose([x, logits, l2]);
  });

  test('ResidualBlock: x + temporal(norm(x)), then + mlp(norm(.)), block type by layer index', () => {
    for (const layerIndex of [0, 1]) {
      const block = new ResidualBlock({config: CFG, layerIndex});
      expect(block.blockType).toBe(layerIndex === 0 ? 'recurrent' : 'attention');
      const p = randomize(block, [B, T, 32], 36 + layerIndex, 0.4);
      const x = randArr(seededUniform(38), [B, T, 32], 2);
      const eps = CFG.rms_norm_eps;
      const n1 = map3(x, (v) => nRmsNorm(v, p.get('temporal_pre_norm.weight'), eps));
      const tb = (n: string) => lin(p, `temporal_block.${n}`);
      const temporal =
        layerIndex === 0
          ? nRecurrentBlock(
              n1,
              {
                linear_x: tb('linear_x'),
                linear_y: tb('linear_y'),
                linear_out: tb('linear_out'),
                conv_w: p.get('temporal_block.conv_1d.weight'),
                conv_b: p.get('temporal_block.conv_1d.bias'),
                lru: {
                  recurrent_param: p.get('temporal_block.rg_lru.recurrent_param'),
                  input_gate_weight: p.get('temporal_block.rg_lru.input_gate_weight'),
                  input_gate_bias: p.get('temporal_block.rg_lru.input_gate_bias'),
                  recurrent_gate_weight: p.get('temporal_block.rg_lru.recurrent_gate_weight'),
                  recurrent_gate_bias: p.get('temporal_block.rg_lru.recurrent_gate_bias'),
                },
              },
              nSeq(B, T),
            )
          : nAttention(n1, {q: tb('q_proj'), k: tb('k_proj'), v: tb('v_proj'), o: tb('o_proj')}, CFG, nSeq(B, T));
      const r1 = map3(temporal, (v, bi, ti) => v.map((z, c) => z + x[bi][ti][c]));
      const n2 = map3(r1, (v) => nRmsNorm(v, p.get('channel_pre_norm.weight'), eps));
      const mlp = nMlp(n2, {
        gate: lin(p, 'mlp_block.gate_proj'),
        up: lin(p, 'mlp_block.up_proj'),
        down: lin(p, 'mlp_block.down_proj'),
      });
      const want = map3(mlp, (v, bi, ti) => v.map((z, c) => z + r1[bi][ti][c]));
      const y = tf.tidy(() => block.apply(toT(x)) as tf.Tensor);
      compare(y, want);
      y.dispose();
    }
  });
});

describe('sqrtBoundDerivative', () => {
  test('value is sqrt; gradient is dy / sqrt(max(4z, 1e-6)), finite at z = 0', () => {
    const z = tf.tensor1d([0, 1e-9, 0.25, 0.81]);
    const dy = tf.tensor1d([2, -3, 5, 7]);
    const v = sqrtBoundDerivative(z);
    expect(maxAbsDiff(v.dataSync(), [0, Math.sqrt(1e-9), 0.5, 0.9])).toBeLessThan(1e-7);
    const g = tf.grad((x: tf.Tensor) => sqrtBoundDerivative(x))(z, dy);
    const gv = g.dataSync();
    expect(Number.isFinite(gv[0])).toBe(true);
    expect(gv[0]).toBeCloseTo(2 / Math.sqrt(1e-6), 2); // 2000
    expect(gv[1]).toBeCloseTo(-3 / Math.sqrt(1e-6), 2); // 4z < 1e-6 is clipped too
    expect(gv[2]).toBeCloseTo(5 / Math.sqrt(1), 5); // the true derivative 1 / (2 sqrt z) elsewhere
    expect(gv[3]).toBeCloseTo(7 / (2 * 0.9), 5);
    tf.dispose([z, dy, v, g]);
  });

  test('the RG-LRU gradient stays finite when a -> 1 (gate_a -> 0)', () => {
    const layer = new RGLRU({config: CFG});
    randomize(layer, [1, 4, 24], 39, 1);
    // recurrent_param very negative: softplus ~ 0, log_a ~ 0, 1 - a^2 ~ 0.
    layer.recurrent_param.write(tf.fill([24], -40));
    const u = toT(randArr(seededUniform(40), [1, 4, 24]));
    const vars = [...layer.namedParams().values()].map((v) => v.read() as tf.Variable);
    const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(u) as tf.Tensor) as tf.Scalar, vars);
    for (const g of Object.values(grads)) expect(flat(g.arraySync()).every(Number.isFinite)).toBe(true);
    tf.dispose([u, value, ...Object.values(grads)]);
  });
});

describe('tfjs serialization', () => {
  const cases: [typeof GriffinLayer & {className: string}, () => GriffinLayer, number[]][] = [
    [
      Linear as any,
      () => new Linear({config: CFG, inFeatures: 32, outFeatures: 5, bias: false, name: 'lin'}),
      [B, T, 32],
    ],
    [RMSNorm as any, () => new RMSNorm({config: CFG, dim: 24, name: 'norm'}), [B, T, 24]],
    [MLPBlock as any, () => new MLPBlock({config: CFG, name: 'mlp'}), [B, T, 32]],
    [Conv1D as any, () => new Conv1D({config: CFG, name: 'conv'}), [B, T, 24]],
    [RGLRU as any, () => new RGLRU({config: CFG, name: 'lru'}), [B, T, 24]],
    [RecurrentBlock as any, () => new RecurrentBlock({config: CFG, name: 'rec'}), [B, T, 32]],
    [LocalAttentionBlock as any, () => new LocalAttentionBlock({config: CFG, name: 'att'}), [B, T, 32]],
    [Embedding as any, () => new Embedding({config: CFG, name: 'emb'}), [B, T]],
    [LMHead as any, () => new LMHead({config: CFG, name: 'head'}), [B, T, 32]],
    [ResidualBlock as any, () => new ResidualBlock({config: CFG, layerIndex: 1, name: 'res'}), [B, T, 32]],
  ];
  const names = new Set<string>();
  for (const [cls, make, inShape] of cases) {
    test(`${cls.className}: registered, getConfig / fromConfig round-trip`, () => {
      expect(cls.className).toMatch(/^Griffin/);
      expect(names.has(cls.className)).toBe(false);
      names.add(cls.className);
      const entry = tf.serialization.SerializationMap.getMap().classNameMap[cls.className];
      expect(entry).toBeDefined();
      expect(entry[0]).toBe(cls);
      const layer = make();
      const p = randomize(layer, inShape, 41);
      const config = layer.getConfig();
      const copy = entry[1](entry[0], JSON.parse(JSON.stringify(config))) as GriffinLayer;
      expect(copy).toBeInstanceOf(cls);
      expect(copy.getConfig()).toEqual(config);
      expect(copy.cfg.toJSON()).toEqual(layer.cfg.toJSON());
      copy.build(inShape);
      const cp = copy.namedParams();
      expect([...cp.keys()]).toEqual([...p.keys()]);
      for (const [name, v] of layer.namedParams()) {
        expect(cp.get(name)!.shape).toEqual(v.shape);
        cp.get(name)!.write(v.read());
      }
      const input =
        inShape.length === 2
          ? tf.tensor2d(
              [
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
              ],
              undefined,
              'int32',
            )
          : toT(randArr(seededUniform(42), inShape));
      const [a, b] = tf.tidy(() => [layer.apply(input) as tf.Tensor, copy.apply(input) as tf.Tensor]);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
      tf.dispose([input, a, b]);
      for (const v of [...layer.weights, ...copy.weights]) v.dispose();
    });
  }
});
