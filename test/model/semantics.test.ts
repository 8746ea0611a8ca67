/**
 * What forward() means on the tiny-a model (layers recurrent, recurrent, attention, recurrent):
 * packing, padding, causality, predict vs forward, the loss, and the attention window.
 */
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, seededUniform} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const TOL = 1e-5;

let model: RecurrentGemmaForCausalLM;
let V: number;
beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  V = model.config.vocab_size;
});

function randomIds(seed: number, n: number, lo = 3): number[] {
  const r = seededUniform(seed);
  return Array.from({length: n}, () => lo + Math.floor(r() * (V - lo)));
}

/** logits [b, t, V] as nested arrays, the tensors disposed. */
function logitsOf(inputs: Parameters<RecurrentGemmaForCausalLM['forward']>[0]): number[][][] {
  const out = model.forward(inputs);
  const l = out.logits.arraySync() as number[][][];
  tf.dispose(out as unknown as tf.TensorContainer);
  return l;
}
const flat2 = (rows: number[][]) => rows.flat();

describe('packing: positionIds restarting at 0', () => {
  test('two documents in one row give the logits of each run alone', () => {
    const a = randomIds(1, 9),
      b = randomIds(2, 7); // both longer than conv1d_width 4
    const packed = logitsOf({inputIds: [[...a, ...b]], positionIds: [[...a.keys(), ...b.keys()]]})[0];
    const aloneA = logitsOf({inputIds: [a]})[0];
    const aloneB = logitsOf({inputIds: [b]})[0];
    expect(maxAbsDiff(flat2(packed.slice(0, a.length)), flat2(aloneA))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(packed.slice(a.length)), flat2(aloneB))).toBeLessThan(TOL);
    // Without the restart the second document would see the first: a real difference.
    const unpacked = logitsOf({inputIds: [[...a, ...b]]})[0];
    expect(maxAbsDiff(flat2(unpacked.slice(a.length)), flat2(aloneB))).toBeGreaterThan(1e-3);
  });

  test('three documents, positionIds as a tensor, in a batch with an unpacked row', () => {
    const docs = [randomIds(3, 5), randomIds(4, 6), randomIds(5, 5)];
    const row0 = docs.flat();
    const row1 = randomIds(6, row0.length);
    const positionIds = tf.tensor2d([docs.flatMap((d) => [...d.keys()]), [...row1.keys()]], undefined, 'int32');
    const out = logitsOf({inputIds: [row0, row1], positionIds});
    positionIds.dispose();
    let off = 0;
    for (const d of docs) {
      expect(maxAbsDiff(flat2(out[0].slice(off, off + d.length)), flat2(logitsOf({inputIds: [d]})[0]))).toBeLessThan(
        TOL,
      );
      off += d.length;
    }
    expect(maxAbsDiff(flat2(out[1]), flat2(logitsOf({inputIds: [row1]})[0]))).toBeLessThan(TOL);
  });
});

describe('padding with attentionMask', () => {
  // Drawn in beforeAll: V is known only once the model has loaded (drawn here, they were NaN).
  let short: number[], long: number[];
  const PAD = 0;
  let aloneShort: number[][], aloneLong: number[][];
  beforeAll(() => {
    short = randomIds(7, 6);
    long = randomIds(8, 11);
    aloneShort = logitsOf({inputIds: [short]})[0];
    aloneLong = logitsOf({inputIds: [long]})[0];
  });

  test('left padding: real tokens get the logits they get alone', () => {
    const p = long.length - short.length;
    const out = logitsOf({
      inputIds: [[...Array(p).fill(PAD), ...short], long],
      attentionMask: [[...Array(p).fill(0), ...Array(short.length).fill(1)], Array(long.length).fill(1)],
    });
    expect(maxAbsDiff(flat2(out[0].slice(p)), flat2(aloneShort))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(out[1]), flat2(aloneLong))).toBeLessThan(TOL);
  });

  test('right padding: real tokens get the logits they get alone', () => {
    const p = long.length - short.length;
    const out = logitsOf({
      inputIds: [[...short, ...Array(p).fill(PAD)], long],
      attentionMask: [[...Array(short.length).fill(1), ...Array(p).fill(0)], Array(long.length).fill(1)],
    });
    expect(maxAbsDiff(flat2(out[0].slice(0, short.length)), flat2(aloneShort))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(out[1]), flat2(aloneLong))).toBeLessThan(TOL);
  });

  test('a row of padding only stays finite and leaves the other row alone', () => {
    const out = logitsOf({
      inputIds: [[PAD, PAD, ...short], Array(short.length + 2).fill(PAD)],
      attentionMask: [[0, 0, ...Array(short.length).fill(1)], Array(short.length + 2).fill(0)],
    });
    expect(out[1].flat().every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(flat2(out[0].slice(2)), flat2(aloneShort))).toBeLessThan(TOL);
  });

  test('packed documents with left and right padding', () => {
    const a = short,
      b = long.slice(0, 5);
    const ids = [
      [PAD, PAD, ...a, ...b],
      [...b, ...a, PAD, PAD],
    ];
    const attentionMask = [
      [0, 0, ...Array(a.length + b.length).fill(1)],
      [...Array(a.length + b.length).fill(1), 0, 0],
    ];
    const positionIds = [
      [0, 0, ...a.keys(), ...b.keys()],
      [...b.keys(), ...a.keys(), 0, 0],
    ];
    const out = logitsOf({inputIds: ids, attentionMask, positionIds});
    const aloneB = logitsOf({inputIds: [b]})[0];
    expect(maxAbsDiff(flat2(out[0].slice(2, 2 + a.length)), flat2(aloneShort))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(out[0].slice(2 + a.length)), flat2(aloneB))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(out[1].slice(0, b.length)), flat2(aloneB))).toBeLessThan(TOL);
    expect(maxAbsDiff(flat2(out[1].slice(b.length, b.length + a.length)), flat2(aloneShort))).toBeLessThan(TOL);
  });

  test('changing a padded token id changes no real token logits', () => {
    // Padding on the left, in the middle and on the right.
    const mask = [[0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0]];
    const real = [...short];
    const base = mask[0].map((m) => (m ? real.shift()! : PAD));
    const ref = logitsOf({inputIds: [base], attentionMask: mask})[0];
    const r = seededUniform(9);
    const other = base.map((id, i) => (mask[0][i] ? id : 1 + Math.floor(r() * (V - 1))));
    expect(other).not.toEqual(base);
    const out = logitsOf({inputIds: [other], attentionMask: mask})[0];
    for (let i = 0; i < base.length; i++) {
      if (mask[0][i]) expect({i, d: maxAbsDiff(out[i], ref[i])}).toEqual({i, d: 0});
    }
  });
});

describe('predict and forward', () => {
  test('model.predict(int32 ids) equals forward().logits', () => {
    const ids = [randomIds(10, 12), randomIds(11, 12)];
    const t = tf.tensor2d(ids, undefined, 'int32');
    const p = model.predict(t) as tf.Tensor;
    expect(p.shape).toEqual([2, 12, V]);
    const f = model.forward({inputIds: t});
    expect(maxAbsDiff(p.dataSync(), f.logits.dataSync())).toBeLessThan(1e-6);
    // A float ids tensor is cast.
    const tf32 = tf.cast(t, 'float32');
    const f2 = model.forward({inputIds: tf32});
    expect(maxAbsDiff(f2.logits.dataSync(), f.logits.dataSync())).toBe(0);
    tf.dispose([t, p, f.logits, tf32, f2.logits]);
  });

  test('forward leaves no tensor behind but its outputs', () => {
    const before = tf.memory().numTensors;
    const ids = [randomIds(12, 8), randomIds(13, 8)];
    const out = model.forward({
      inputIds: ids,
      labels: ids,
      attentionMask: [[0, 0, 1, 1, 1, 1, 1, 1], Array(8).fill(1)],
      outputHiddenStates: true,
    });
    expect(tf.memory().numTensors).toBe(before + 2 + out.hiddenStates!.length);
    tf.dispose([out.logits, out.loss!, ...out.hiddenStates!]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('loss', () => {
  /** Mean over counted positions of -log softmax(logits[i])[labels[i + 1]], in float64. */
  function manualLoss(logits: number[][][], labels: number[][]): number {
    let total = 0,
      n = 0;
    logits.forEach((row, b) => {
      for (let i = 0; i + 1 < row.length; i++) {
        const y = labels[b][i + 1];
        if (y === -100) continue;
        const mx = Math.max(...row[i]);
        const lse = mx + Math.log(row[i].reduce((s, v) => s + Math.exp(v - mx), 0));
        total += lse - row[i][y];
        n++;
      }
    });
    return total / n;
  }

  test('equals log-softmax cross entropy of logits[i] against labels[i + 1]', () => {
    const ids = [randomIds(14, 10), randomIds(15, 10)];
    const labels = ids.map((r) => r.map((v, i) => (i === 3 ? -100 : v)));
    const out = model.forward({inputIds: ids, labels});
    const want = manualLoss(out.logits.arraySync() as number[][][], labels);
    expect(Math.abs(out.loss!.dataSync()[0] - want)).toBeLessThan(1e-5);
    expect(want).toBeGreaterThan(1); // a real loss, not a degenerate 0
    tf.dispose([out.logits, out.loss!]);
  });

  test("a row of only -100 counts for nothing: the loss is the other row's alone", () => {
    const a = randomIds(16, 9),
      b = randomIds(17, 9);
    const both = model.forward({inputIds: [a, b], labels: [Array(9).fill(-100), b]});
    const alone = model.forward({inputIds: [b], labels: [b]});
    const lb = both.loss!.dataSync()[0],
      la = alone.loss!.dataSync()[0];
    expect(Number.isFinite(lb)).toBe(true);
    expect(Math.abs(lb - la)).toBeLessThan(1e-5);
    expect(Math.abs(la - manualLoss(alone.logits.arraySync() as number[][][], [b]))).toBeLessThan(1e-5);
    tf.dispose([both.logits, both.loss!, alone.logits, alone.loss!]);
  });

  test('all labels -100 gives 0, not NaN, and a zero gradient', () => {
    const ids = [randomIds(18, 6), randomIds(19, 6)];
    const labels = ids.map((r) => r.map(() => -100));
    const out = model.forward({inputIds: ids, labels});
    expect(Math.abs(out.loss!.dataSync()[0])).toBe(0);
    tf.dispose([out.logits, out.loss!]);
    const vars = [...model.namedParameters().values()].slice(0, 3).map((v) => v.read() as tf.Variable);
    const {value, grads} = tf.variableGrads(() => model.forward({inputIds: ids, labels}).loss!, vars);
    for (const g of Object.values(grads)) expect(g.dataSync().every((v) => v === 0)).toBe(true);
    tf.dispose([value, ...Object.values(grads)]);
  });
});

describe('causality', () => {
  test('changing token j changes no logits before j (and does change them from j on)', () => {
    const ids = randomIds(20, 14);
    const ref = logitsOf({inputIds: [ids]})[0];
    for (const j of [1, 5, 9, 13]) {
      const changed = [...ids];
      changed[j] = ids[j] === 7 ? 8 : 7;
      const out = logitsOf({inputIds: [changed]})[0];
      for (let i = 0; i < j; i++) expect({j, i, d: maxAbsDiff(out[i], ref[i])}).toEqual({j, i, d: 0});
      expect(maxAbsDiff(out[j], ref[j])).toBeGreaterThan(1e-4);
      if (j + 1 < ids.length) expect(maxAbsDiff(out[j + 1], ref[j + 1])).toBeGreaterThan(1e-6);
    }
  });
});

describe('the attention window (one attention layer, W = 4)', () => {
  const W = 4;
  let m: RecurrentGemmaForCausalLM;
  beforeAll(() => {
    m = new RecurrentGemmaForCausalLM({
      num_hidden_layers: 1,
      vocab_size: 40,
      hidden_size: 32,
      intermediate_size: 64,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      attention_window_size: W,
      block_types: ['attention'],
    });
    // Random init keeps o_proj small; make the attention's effect plainly visible.
    const o = m.namedParameters().get('model.layers.0.temporal_block.o_proj.weight')!;
    const big = tf.mul(o.read(), 20);
    o.write(big);
    big.dispose();
  });
  afterAll(() => m.dispose());

  const run = (ids: number[]) => {
    const out = m.forward({inputIds: [ids]});
    const l = (out.logits.arraySync() as number[][][])[0];
    out.logits.dispose();
    return l;
  };

  test('logits at i ignore token i - W - 1 and depend on token i - W', () => {
    const ids = Array.from({length: 12}, (_, i) => 3 + ((i * 7) % 37));
    const ref = run(ids);
    for (const i of [6, 8, 11]) {
      const outside = [...ids];
      outside[i - W - 1] = ids[i - W - 1] === 1 ? 2 : 1;
      expect({i, d: maxAbsDiff(run(outside)[i], ref[i])}).toEqual({i, d: 0});
      const edge = [...ids];
      edge[i - W] = ids[i - W] === 1 ? 2 : 1;
      expect(maxAbsDiff(run(edge)[i], ref[i])).toBeGreaterThan(1e-5);
    }
  });
});
