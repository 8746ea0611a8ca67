/**
 * The WGSL RgLruScan kernels (serial and chunked paths, forward and gradient) against the
 * reference, on tfjs's webgpu backend. Without a GPU this runs on SwiftShader from Debian's
 * chromium package; with no adapter at all it skips, except under CI where it fails.
 */

import {rgLruScan} from '../../ops/rg_lru_scan';
import {rgLruScanGradReference, rgLruScanReference} from '../../ops/rg_lru_scan/reference';
import {rgLruScanWebGPUConfig, scanPlan} from '../../ops/rg_lru_scan/webgpu';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {maxAbsDiff, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

function randomCase(seed: number, b: number, t: number, e: number) {
  const r = seededUniform(seed);
  const a = Float32Array.from({length: b * t * e}, () => 0.05 + 0.94 * r());
  const x = Float32Array.from({length: b * t * e}, () => 2 * r() - 1);
  const h0 = Float32Array.from({length: b * e}, () => 2 * r() - 1);
  const wh = Float32Array.from({length: b * t * e}, () => 2 * r() - 1);
  const wl = Float32Array.from({length: b * e}, () => 2 * r() - 1);
  return {a, x, h0, wh, wl};
}

type Path = 'serial' | 'chunked' | 'auto';
/** Runs fn with the path forced (chunked with the given chunk size), restoring the defaults. */
async function onPath<T>(path: Path, chunkSize: number, fn: () => Promise<T>): Promise<T> {
  Object.assign(rgLruScanWebGPUConfig, {path, chunkSize});
  try {
    return await fn();
  } finally {
    Object.assign(rgLruScanWebGPUConfig, {path: 'auto', chunkSize: 0});
  }
}

async function forward(a: Float32Array, x: Float32Array, h0: Float32Array | null, b: number, t: number, e: number) {
  const {h, hLast} = rgLruScan(
    tf.tensor3d(a, [b, t, e]),
    tf.tensor3d(x, [b, t, e]),
    h0 ? tf.tensor2d(h0, [b, e]) : undefined,
  );
  return {h: await h.data(), hLast: await hLast.data()};
}

// Loss L = sum(h * wh) + sum(hLast * wl), so dL/dh = wh and dL/dhLast = wl.
async function gradients(c: ReturnType<typeof randomCase>, b: number, t: number, e: number) {
  const WH = tf.tensor3d(c.wh, [b, t, e]),
    WL = tf.tensor2d(c.wl, [b, e]);
  const [da, dx, dh0] = tf.grads((A: tf.Tensor, X: tf.Tensor, H0: tf.Tensor) => {
    const {h, hLast} = rgLruScan(A, X, H0);
    return tf.add(tf.sum(tf.mul(h, WH)), tf.sum(tf.mul(hLast, WL))) as tf.Scalar;
  })([tf.tensor3d(c.a, [b, t, e]), tf.tensor3d(c.x, [b, t, e]), tf.tensor2d(c.h0, [b, e])]);
  return {da: await da.data(), dx: await dx.data(), dh0: await dh0.data()};
}

// [b, t, e, chunk size for the forced chunked path]
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 4],
  [2, 1, 8, 4],
  [2, 7, 5, 4],
  [3, 33, 16, 8],
  [1, 64, 3, 16],
  [2, 130, 37, 64],
  [2, 1000, 37, 64],
];
const TOL = 1e-4;

describeWebGPU('RgLruScan on webgpu', () => {
  let scopeStart = 0;
  beforeAll(async () => {
    await initNodeWebGPU();
    expect(tf.getBackend()).toBe('webgpu');
  });
  beforeEach(() => {
    scopeStart = tf.memory().numTensors;
    tf.engine().startScope();
  });
  afterEach(() => {
    tf.engine().endScope();
    expect(tf.memory().numTensors).toBe(scopeStart);
  });

  test('initNodeWebGPU is idempotent', async () => {
    await Promise.all([initNodeWebGPU(), initNodeWebGPU()]);
    expect(tf.getBackend()).toBe('webgpu');
  });

  test('the auto path picks chunks only for long sequences', () => {
    expect(scanPlan(1).chunk).toBe(0);
    expect(scanPlan(100).chunk).toBe(0);
    const long = scanPlan(1000);
    expect(long.chunk).toBeGreaterThanOrEqual(64);
    expect(long.numChunks).toBe(Math.ceil(1000 / long.chunk));
  });

  for (const [b, t, e, chunk] of SHAPES) {
    for (const path of ['serial', 'chunked', 'auto'] as const) {
      const name = `b=${b} t=${t} e=${e}, ${path}${path === 'chunked' ? ` (chunk ${chunk})` : ''}`;

      test(`forward h and hLast equal the reference, ${name}`, async () => {
        const c = randomCase(b * 1000 + t * 10 + e, b, t, e);
        const ref = rgLruScanReference(c.a, c.x, c.h0, b, t, e);
        const got = await onPath(path, chunk, () => forward(c.a, c.x, c.h0, b, t, e));
        expect(maxAbsDiff(got.h, ref.h)).toBeLessThan(TOL);
        expect(maxAbsDiff(got.hLast, ref.hLast)).toBeLessThan(TOL);
      });

      test(`tf.grads equals the reference backward scan, ${name}`, async () => {
        const c = randomCase(b * 1000 + t * 10 + e + 1, b, t, e);
        const ref = rgLruScanReference(c.a, c.x, c.h0, b, t, e);
        const refGrad = rgLruScanGradReference(c.a, ref.h, c.h0, c.wh, c.wl, b, t, e);
        const got = await onPath(path, chunk, () => gradients(c, b, t, e));
        expect(maxAbsDiff(got.dx, refGrad.dx)).toBeLessThan(TOL);
        expect(maxAbsDiff(got.da, refGrad.da)).toBeLessThan(TOL);
        expect(maxAbsDiff(got.dh0, refGrad.dh0)).toBeLessThan(TOL);
      });
    }
  }

  for (const path of ['serial', 'chunked'] as const) {
    test(`without h0 the state starts at zero, ${path}`, async () => {
      const [b, t, e] = [2, 45, 6];
      const c = randomCase(77, b, t, e);
      const ref = rgLruScanReference(c.a, c.x, null, b, t, e);
      const got = await onPath(path, 8, () => forward(c.a, c.x, null, b, t, e));
      expect(maxAbsDiff(got.h, ref.h)).toBeLessThan(TOL);
      expect(maxAbsDiff(got.hLast, ref.hLast)).toBeLessThan(TOL);
    });
  }

  test('chaining two scans through hLast equals one long scan', async () => {
    const [b, t, e] = [2, 300, 9];
    const c = randomCase(12, b, t, e);
    const A = tf.tensor3d(c.a, [b, t, e]),
      X = tf.tensor3d(c.x, [b, t, e]),
      H0 = tf.tensor2d(c.h0, [b, e]);
    const whole = rgLruScan(A, X, H0).h;
    const p1 = rgLruScan(A.slice([0, 0, 0], [b, 170, e]), X.slice([0, 0, 0], [b, 170, e]), H0);
    const p2 = rgLruScan(A.slice([0, 170, 0], [b, 130, e]), X.slice([0, 170, 0], [b, 130, e]), p1.hLast);
    expect(maxAbsDiff(await tf.concat([p1.h, p2.h], 1).data(), await whole.data())).toBeLessThan(TOL);
  });

  test('t = 0 gives an empty h and hLast = h0', async () => {
    const h0 = Float32Array.from([1, -2, 3, 4, 5, -6]);
    const {h, hLast} = rgLruScan(tf.zeros([2, 0, 3]), tf.zeros([2, 0, 3]), tf.tensor2d(h0, [2, 3]));
    expect(h.shape).toEqual([2, 0, 3]);
    expect(Array.from(await hLast.data())).toEqual(Array.from(h0));
  });
});
