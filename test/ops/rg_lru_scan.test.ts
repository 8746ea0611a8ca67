import * as tf from '@tensorflow/tfjs-core';
import '../../src/tf';
import {RG_LRU_SCAN, rgLruScan} from '../../ops/rg_lru_scan';
import {registerRgLruScanComposite} from '../../ops/rg_lru_scan/composite';
import {rgLruScanGradReference, rgLruScanReference} from '../../ops/rg_lru_scan/reference';
import {maxAbsDiff, seededUniform} from '../helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function randomCase(seed: number, b: number, t: number, e: number) {
  const r = seededUniform(seed);
  const a = Float32Array.from({length: b * t * e}, () => 0.05 + 0.94 * r());
  const x = Float32Array.from({length: b * t * e}, () => 2 * r() - 1);
  const h0 = Float32Array.from({length: b * e}, () => 2 * r() - 1);
  return {a, x, h0};
}

/** Runs the scan on another backend name that only has the composite kernel registered. */
async function withCompositeBackend<T>(fn: () => T): Promise<T> {
  const name = 'cpu-composite-test';
  if (tf.findBackend(name) == null) {
    const {MathBackendCPU} = await import('@tensorflow/tfjs-backend-cpu');
    tf.registerBackend(name, () => new MathBackendCPU());
    // Borrow every cpu kernel except the scan, which must come from the composite.
    for (const k of tf.getKernelsForBackend('cpu')) {
      if (!k.kernelName.startsWith(RG_LRU_SCAN)) tf.registerKernel({...k, backendName: name});
    }
    registerRgLruScanComposite(name);
  }
  await tf.setBackend(name);
  try {
    return fn();
  } finally {
    await tf.setBackend('cpu');
  }
}

describe('RgLruScan forward', () => {
  for (const [b, t, e] of [
    [1, 1, 1],
    [2, 7, 5],
    [3, 33, 16],
    [1, 64, 3],
  ]) {
    test(`cpu kernel and composite equal the reference, b=${b} t=${t} e=${e}`, async () => {
      const {a, x, h0} = randomCase(b * 100 + t * 10 + e, b, t, e);
      const ref = rgLruScanReference(a, x, h0, b, t, e);
      const run = () =>
        tf.tidy(() => {
          const {h, hLast} = rgLruScan(tf.tensor3d(a, [b, t, e]), tf.tensor3d(x, [b, t, e]), tf.tensor2d(h0, [b, e]));
          return [h.dataSync().slice(), hLast.dataSync().slice()];
        });
      const [h, hLast] = run();
      expect(maxAbsDiff(h, ref.h)).toBeLessThan(1e-5);
      expect(maxAbsDiff(hLast, ref.hLast)).toBeLessThan(1e-5);
      const [hc, hcLast] = await withCompositeBackend(run);
      expect(maxAbsDiff(hc, ref.h)).toBeLessThan(1e-5);
      expect(maxAbsDiff(hcLast, ref.hLast)).toBeLessThan(1e-5);
    });
  }

  test('without h0 the state starts at zero', () => {
    const {a, x} = randomCase(7, 2, 5, 3);
    const ref = rgLruScanReference(a, x, null, 2, 5, 3);
    const {h} = rgLruScan(tf.tensor3d(a, [2, 5, 3]), tf.tensor3d(x, [2, 5, 3]));
    expect(maxAbsDiff(h.dataSync(), ref.h)).toBeLessThan(1e-6);
  });

  test('rejects mismatched shapes and non-float inputs with a clear error', () => {
    expect(() => rgLruScan(tf.zeros([1, 2, 3]), tf.zeros([1, 2, 4]))).toThrow(/a and x must both be/);
    expect(() => rgLruScan(tf.zeros([1, 2, 3]), tf.zeros([1, 2, 3], 'int32'))).toThrow(/x must be float32/);
  });

  test('chaining two scans through hLast equals one long scan', () => {
    const {a, x, h0} = randomCase(11, 2, 10, 4);
    const A = tf.tensor3d(a, [2, 10, 4]),
      X = tf.tensor3d(x, [2, 10, 4]),
      H0 = tf.tensor2d(h0, [2, 4]);
    const whole = rgLruScan(A, X, H0).h;
    const p1 = rgLruScan(A.slice([0, 0, 0], [2, 6, 4]), X.slice([0, 0, 0], [2, 6, 4]), H0);
    const p2 = rgLruScan(A.slice([0, 6, 0], [2, 4, 4]), X.slice([0, 6, 0], [2, 4, 4]), p1.hLast);
    expect(maxAbsDiff(tf.concat([p1.h, p2.h], 1).dataSync(), whole.dataSync())).toBeLessThan(1e-6);
  });
});

describe('RgLruScan gradient', () => {
  // Loss L = sum(h * wh) + sum(hLast * wl), so dL/dh = wh and dL/dhLast = wl.
  function analytic(b: number, t: number, e: number, seed: number) {
    const {a, x, h0} = randomCase(seed, b, t, e);
    const r = seededUniform(seed + 1);
    const wh = Float32Array.from({length: b * t * e}, () => 2 * r() - 1);
    const wl = Float32Array.from({length: b * e}, () => 2 * r() - 1);
    return {a, x, h0, wh, wl};
  }
  const loss = (a: tf.Tensor, x: tf.Tensor, h0: tf.Tensor, wh: tf.Tensor, wl: tf.Tensor) => {
    const {h, hLast} = rgLruScan(a, x, h0);
    return tf.add(tf.sum(tf.mul(h, wh)), tf.sum(tf.mul(hLast, wl))) as tf.Scalar;
  };

  for (const backend of ['cpu', 'composite']) {
    test(`${backend}: tf.grads equals the reference backward scan`, async () => {
      const [b, t, e] = [2, 9, 5];
      const {a, x, h0, wh, wl} = analytic(b, t, e, 5);
      const ref = rgLruScanReference(a, x, h0, b, t, e);
      const refGrad = rgLruScanGradReference(a, ref.h, h0, wh, wl, b, t, e);
      const run = () =>
        tf.tidy(() => {
          const WH = tf.tensor3d(wh, [b, t, e]),
            WL = tf.tensor2d(wl, [b, e]);
          const g = tf.grads((A: tf.Tensor, X: tf.Tensor, H0: tf.Tensor) => loss(A, X, H0, WH, WL))([
            tf.tensor3d(a, [b, t, e]),
            tf.tensor3d(x, [b, t, e]),
            tf.tensor2d(h0, [b, e]),
          ]);
          return g.map((v) => v.dataSync().slice());
        });
      const [da, dx, dh0] = backend === 'cpu' ? run() : await withCompositeBackend(run);
      expect(maxAbsDiff(dx, refGrad.dx)).toBeLessThan(1e-5);
      expect(maxAbsDiff(da, refGrad.da)).toBeLessThan(1e-5);
      expect(maxAbsDiff(dh0, refGrad.dh0)).toBeLessThan(1e-5);
    });
  }

  test('numeric gradient check (central differences in float64 on the reference)', () => {
    const [b, t, e] = [2, 6, 3];
    const {a, x, h0, wh, wl} = analytic(b, t, e, 9);
    const f = (aa: Float32Array, xx: Float32Array, hh: Float32Array) => {
      // float64 evaluation of the loss on the reference scan
      let s = 0;
      for (let bi = 0; bi < b; bi++)
        for (let c = 0; c < e; c++) {
          let st = hh[bi * e + c];
          for (let ti = 0; ti < t; ti++) {
            const i = (bi * t + ti) * e + c;
            st = aa[i] * st + xx[i];
            s += st * wh[i];
          }
          s += st * wl[bi * e + c];
        }
      return s;
    };
    const g = tf.tidy(() => {
      const WH = tf.tensor3d(wh, [b, t, e]),
        WL = tf.tensor2d(wl, [b, e]);
      return tf
        .grads((A: tf.Tensor, X: tf.Tensor, H0: tf.Tensor) => loss(A, X, H0, WH, WL))([
          tf.tensor3d(a, [b, t, e]),
          tf.tensor3d(x, [b, t, e]),
          tf.tensor2d(h0, [b, e]),
        ])
        .map((v) => v.dataSync().slice());
    });
    const eps = 1e-3;
    const inputs = [a, x, h0];
    let worst = 0;
    inputs.forEach((arr, which) => {
      for (let i = 0; i < arr.length; i++) {
        const plus = inputs.map((v) => Float64Array.from(v) as unknown as Float32Array);
        const minus = inputs.map((v) => Float64Array.from(v) as unknown as Float32Array);
        plus[which][i] += eps;
        minus[which][i] -= eps;
        const num = (f(plus[0], plus[1], plus[2]) - f(minus[0], minus[1], minus[2])) / (2 * eps);
        worst = Math.max(worst, Math.abs(num - g[which][i]));
      }
    });
    expect(worst).toBeLessThan(1e-3);
  });

  test('gradient flows when only h is used (hLast has no gradient)', () => {
    const g = tf.grad((x: tf.Tensor) => tf.sum(rgLruScan(tf.fill([1, 4, 2], 0.5), x).h))(tf.ones([1, 4, 2]));
    // dL/dx[t] = sum_{s>=t} 0.5^(s-t): 1 + .5 + .25 + .125 at t=0, ..., 1 at t=3
    expect(Array.from(g.dataSync())).toEqual([1.875, 1.875, 1.75, 1.75, 1.5, 1.5, 1, 1]);
  });
});
