/**
 * ops/wasm_matmul.ts: every transpose / batch combination equals the cpu backend's product; a
 * weight's cached transposed copy follows writes to the variable and is freed with its data;
 * gradients through it equal cpu's.
 */

import {wasmMatMulCacheBytes, wasmMatMulConfig} from '../../ops/wasm_matmul';
import {useBackend} from '../../src/backend';
import {tf} from '../../src/tf';
import {maxAbsDiff, seededUniform} from '../helpers';

function values(shape: number[], seed: number): Float32Array {
  const r = seededUniform(seed);
  return Float32Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => 2 * r() - 1);
}

async function on<T>(backend: string, f: () => T | Promise<T>): Promise<T> {
  await useBackend(backend);
  return f();
}

afterAll(async () => {
  await useBackend('wasm');
});

const CASES: [number[], number[], boolean, boolean][] = [
  [[5, 7], [9, 7], false, true], // Linear: x W^T
  [[7, 5], [7, 9], true, false], // a weight's gradient: dy^T x
  [[7, 5], [9, 7], true, true],
  [[2, 3, 5, 7], [7, 9], false, false], // batch against one matrix
  [[2, 3, 5, 7], [9, 7], false, true],
  [[4, 5, 7], [4, 7, 9], false, false], // per-head products
  [[4, 7, 5], [4, 9, 7], true, true],
  [[1, 5, 7], [4, 7, 9], false, false], // a broadcast against b's batch
  [[2, 2, 6, 4], [2, 2, 3, 4], false, true], // attention: q k^T
  [[33, 70], [70, 65], false, false], // the original's own fast path
  // Per-matrix products large enough (>= 4M multiply-adds each) to be split into 2D ones.
  [[2, 128, 128], [2, 128, 256], false, false],
  [[2, 128, 128], [2, 256, 128], false, true],
  [[1, 128, 128], [2, 128, 256], false, false],
  [[2, 128, 128], [2, 256, 128], true, true],
];

test.each(CASES)('a %j b %j transposeA %s transposeB %s equals cpu', async (sa, sb, ta, tb) => {
  const av = values(sa, 1),
    bv = values(sb, 2);
  const ref = await on('cpu', () => {
    const y = tf.matMul(tf.tensor(av, sa), tf.tensor(bv, sb), ta, tb);
    return {shape: y.shape, data: y.dataSync()};
  });
  for (const asVariable of [false, true]) {
    const got = await on('wasm', () => {
      const a = tf.tensor(av, sa);
      const b = asVariable ? tf.variable(tf.tensor(bv, sb)) : tf.tensor(bv, sb);
      const y = tf.matMul(a, b, ta, tb);
      const out = {shape: y.shape, data: y.dataSync()};
      tf.dispose([a, b, y]);
      return out;
    });
    expect(got.shape).toEqual(ref.shape);
    expect(maxAbsDiff(got.data, ref.data)).toBeLessThan(2e-5 * Math.sqrt(sa[sa.length - (ta ? 2 : 1)]));
  }
});

test("a weight's cached copy follows assign and is freed with its data", async () => {
  await useBackend('wasm');
  expect(wasmMatMulConfig.cacheWeights).toBe(true);
  const before = wasmMatMulCacheBytes();
  const x = tf.tensor2d([[1, 2, 3]]);
  const init = tf.tensor2d([
    [1, 0, 0],
    [0, 1, 0],
  ]); // [out 2, in 3]
  const w = tf.variable(init); // shares init's data until the first write
  init.dispose();
  expect(Array.from(tf.matMul(x, w, false, true).dataSync())).toEqual([1, 2]);
  expect(wasmMatMulCacheBytes() - before).toBe(2 * 3 * 4);
  const next = tf.tensor2d([
    [0, 0, 1],
    [2, 0, 0],
  ]);
  w.assign(next);
  next.dispose();
  expect(Array.from(tf.matMul(x, w, false, true).dataSync())).toEqual([3, 2]);
  // The old data's copy went with it: still one copy.
  expect(wasmMatMulCacheBytes() - before).toBe(2 * 3 * 4);
  w.dispose();
  expect(wasmMatMulCacheBytes()).toBe(before);
  x.dispose();
});

test('past maxCacheBytes, weights are transposed per call (same values, no new copy)', async () => {
  await useBackend('wasm');
  const budget = wasmMatMulConfig.maxCacheBytes;
  const before = wasmMatMulCacheBytes();
  wasmMatMulConfig.maxCacheBytes = before + 6 * 4; // room for the first weight only
  try {
    const x = tf.tensor2d([[1, 2]]);
    const w1 = tf.variable(
      tf.tensor2d([
        [1, 0],
        [0, 1],
        [1, 1],
      ]),
    );
    const w2 = tf.variable(
      tf.tensor2d([
        [2, 0],
        [0, 2],
        [1, -1],
      ]),
    );
    expect(Array.from(tf.matMul(x, w1, false, true).dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(tf.matMul(x, w2, false, true).dataSync())).toEqual([2, 4, -1]);
    expect(wasmMatMulCacheBytes() - before).toBe(6 * 4);
    tf.dispose([x, w1, w2]);
  } finally {
    wasmMatMulConfig.maxCacheBytes = budget;
  }
});

test('gradients through x W^T equal cpu', async () => {
  const xv = values([6, 5], 3),
    wv = values([4, 5], 4),
    dv = values([6, 4], 5);
  const grads = () => {
    const x = tf.tensor2d(xv, [6, 5]),
      w = tf.variable(tf.tensor2d(wv, [4, 5])),
      dy = tf.tensor2d(dv, [6, 4]);
    const {grads: g} = tf.variableGrads(() => tf.sum(tf.mul(tf.matMul(x, w, false, true), dy)) as tf.Scalar, [w]);
    const gx = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xx, w, false, true), dy)))(x);
    const out = {dw: g[w.name].dataSync(), dx: gx.dataSync()};
    tf.dispose([x, w, dy, gx, ...Object.values(g)]);
    return out;
  };
  const ref = await on('cpu', grads);
  const got = await on('wasm', grads);
  expect(maxAbsDiff(got.dw, ref.dw)).toBeLessThan(1e-5);
  expect(maxAbsDiff(got.dx, ref.dx)).toBeLessThan(1e-5);
});

test('useBackend() with no name picks wasm here (tfjs-node is not installed), with this kernel and the OneHot fix', async () => {
  const installed = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'].some((m) => {
    try {
      require.resolve(m);
      return true;
    } catch {
      return false;
    }
  });
  const {useBackend: pick} = await import('../../src/backend');
  const name = await pick();
  expect(name).toBe(installed ? 'tensorflow' : 'wasm');
  if (installed) return;
  // Ours are installed: the product caches the variable's transposed copy, and a float32
  // one-hot holds ones (tfjs-wasm's own kernels do neither).
  const before = wasmMatMulCacheBytes();
  const w = tf.variable(
    tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
    ]),
  );
  expect(Array.from(tf.matMul(tf.tensor2d([[1, 1]]), w, false, true).dataSync())).toEqual([3, 7, 11]);
  expect(wasmMatMulCacheBytes() - before).toBe(6 * 4);
  expect(Array.from(tf.oneHot(tf.tensor1d([1], 'int32'), 2, 1, 0, 'float32').dataSync())).toEqual([0, 1]);
  w.dispose();
});
