/**
 * AdamW against torch.optim.AdamW's update rule written out in float64, global-norm clipping,
 * and the warmup + cosine schedule.
 */
import {tf} from '../../src/tf';
import {AdamW, clipByGlobalNorm, learningRate} from '../../src/training/optimizer';
import {seededUniform} from '../helpers';
import {maxDiff, useCpu} from './helpers';

beforeAll(useCpu);

/** torch.optim.AdamW.step for one tensor (decoupled decay before the Adam update), in float64. */
function torchAdamW(
  p: number[],
  grads: number[][],
  lrs: number[],
  o: {b1: number; b2: number; eps: number; wd: number},
) {
  const m = p.map(() => 0),
    v = p.map(() => 0);
  p = p.slice();
  grads.forEach((g, k) => {
    const t = k + 1,
      lr = lrs[k];
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - o.b2 ** t) + o.eps;
      p[i] -= ((lr / (1 - o.b1 ** t)) * m[i]) / denom;
    }
  });
  return {p, m, v};
}

test('AdamW matches torch.optim.AdamW over several steps; decay only on matrices', () => {
  const rnd = seededUniform(7);
  const w0 = Array.from({length: 12}, () => rnd() * 2 - 1),
    b0 = Array.from({length: 3}, () => rnd() * 2 - 1);
  const W = tf.variable(tf.tensor2d(w0, [3, 4])),
    B = tf.variable(tf.tensor1d(b0));
  const opt = new AdamW(
    new Map([
      ['w', W],
      ['b', B],
    ]),
    {weightDecay: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-6},
  );
  const gw = [0, 1, 2, 3].map(() => Array.from({length: 12}, () => rnd() - 0.5));
  const gb = [0, 1, 2, 3].map(() => Array.from({length: 3}, () => rnd() - 0.5));
  const lrs = [0.01, 0.02, 0.015, 0.005];
  lrs.forEach((lr, k) => {
    const grads = new Map<string, tf.Tensor>([
      ['w', tf.tensor2d(gw[k], [3, 4])],
      ['b', tf.tensor1d(gb[k])],
    ]);
    opt.apply(grads, lr);
    tf.dispose([...grads.values()]);
  });
  const o = {b1: 0.8, b2: 0.95, eps: 1e-6};
  const refW = torchAdamW(w0, gw, lrs, {...o, wd: 0.1}),
    refB = torchAdamW(b0, gb, lrs, {...o, wd: 0});
  const dW = maxDiff(W.dataSync(), refW.p),
    dB = maxDiff(B.dataSync(), refB.p);
  console.log(`AdamW vs float64 torch rule: max |dW| ${dW.toExponential(2)}, |db| ${dB.toExponential(2)}`);
  expect(dW).toBeLessThan(1e-6);
  expect(dB).toBeLessThan(1e-6);
  const state = opt.stateTensors();
  expect(maxDiff(state.get('w.exp_avg')!.dataSync(), refW.m)).toBeLessThan(1e-7);
  expect(maxDiff(state.get('w.exp_avg_sq')!.dataSync(), refW.v)).toBeLessThan(1e-7);
  expect(opt.step).toBe(4);
  opt.dispose();
  tf.dispose([W, B]);
});

test('clipByGlobalNorm scales all gradients together, only above the limit', async () => {
  const g = new Map<string, tf.Tensor>([
    ['a', tf.tensor1d([3, 0])],
    ['b', tf.tensor1d([0, 4])],
  ]);
  const c = await clipByGlobalNorm(g, 1);
  expect(c.norm).toBeCloseTo(5, 6);
  expect([...c.grads.get('a')!.dataSync()][0]).toBeCloseTo(0.6, 5);
  expect([...c.grads.get('b')!.dataSync()][1]).toBeCloseTo(0.8, 5);
  const n = await clipByGlobalNorm(g, 10);
  expect([...n.grads.get('b')!.dataSync()]).toEqual([0, 4]);
  tf.dispose([...g.values(), ...c.grads.values(), ...n.grads.values()]);
});

test('learning rate: linear warmup to the peak, cosine down to minLrRatio * lr', () => {
  const o = {lr: 1e-3, totalSteps: 110, warmupSteps: 10, minLrRatio: 0.1};
  expect(learningRate(1, o)).toBeCloseTo(1e-4, 12);
  expect(learningRate(10, o)).toBeCloseTo(1e-3, 12);
  expect(learningRate(60, o)).toBeCloseTo(0.55e-3, 12); // half-way down the cosine
  expect(learningRate(110, o)).toBeCloseTo(1e-4, 12);
  const lrs = Array.from({length: 100}, (_, i) => learningRate(i + 11, o));
  expect(lrs.every((x, i) => i === 0 || x <= lrs[i - 1])).toBe(true);
});
