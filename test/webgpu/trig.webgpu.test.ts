/**
 * The precise Sin / Cos kernels (ops/precise_trig/webgpu.ts) against the cpu backend on random
 * inputs: float32 accuracy from 0 to the thousands of radians that RoPE reaches, special values,
 * any shape, gradients through them.
 */

import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {maxAbsDiff, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

/** Runs fn on cpu, then on webgpu, returning both results' values. */
async function both(fn: () => tf.Tensor | tf.Tensor[]): Promise<[Float32Array[], Float32Array[]]> {
  const out: Float32Array[][] = [];
  for (const backend of ['cpu', 'webgpu']) {
    await tf.setBackend(backend);
    const r = fn();
    const list = Array.isArray(r) ? r : [r];
    out.push(await Promise.all(list.map(async (t) => (await t.data()) as Float32Array)));
    tf.dispose(list);
  }
  await tf.setBackend('webgpu');
  return [out[0], out[1]];
}

describeWebGPU('precise sin / cos on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    // Small host-resident inputs would otherwise be computed on the host, not by the shader.
    tf.env().set('WEBGPU_CPU_FORWARD', false);
  });
  afterAll(() => {
    tf.env().set('WEBGPU_CPU_FORWARD', true);
  });

  for (const range of [1, Math.PI, 100, 3000, 8192]) {
    test(`within 2.5e-7 of the cpu on [-${range.toFixed(0)}, ${range.toFixed(0)}]`, async () => {
      const r = seededUniform(Math.round(range * 7));
      const x = Float32Array.from({length: 5000}, () => (2 * r() - 1) * range);
      const [cpu, gpu] = await both(() => [tf.sin(tf.tensor1d(x)), tf.cos(tf.tensor1d(x))]);
      expect(maxAbsDiff(gpu[0], cpu[0])).toBeLessThan(2.5e-7);
      expect(maxAbsDiff(gpu[1], cpu[1])).toBeLessThan(2.5e-7);
    });
  }

  test('exact at 0 (the sign of a zero is not kept), NaN for NaN and infinities, any shape kept', async () => {
    const [cpu, gpu] = await both(() => {
      const x = tf.tensor3d([0, -0, NaN, Infinity, -Infinity, 1e-30], [1, 2, 3]);
      const s = tf.sin(x),
        c = tf.cos(x);
      expect(s.shape).toEqual([1, 2, 3]);
      return [s, c, tf.sin(tf.scalar(0.5)), tf.cos(tf.zeros([2, 0]))];
    });
    expect(Array.from(gpu[0], (v) => (v === 0 ? 0 : v))).toEqual([0, 0, NaN, NaN, NaN, Math.fround(1e-30)]);
    expect(Array.from(gpu[1])).toEqual([1, 1, NaN, NaN, NaN, 1]);
    expect(maxAbsDiff(gpu[2], cpu[2])).toBeLessThan(1e-7);
    expect(gpu[3].length).toBe(0);
  });

  test('gradients of sum(sin(x) * cos(2x)) match the cpu', async () => {
    const r = seededUniform(5);
    const x = Float32Array.from({length: 3000}, () => (2 * r() - 1) * 50);
    const [cpu, gpu] = await both(() =>
      tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.sin(v), tf.cos(tf.mul(v, 2)))))(tf.tensor1d(x)),
    );
    expect(maxAbsDiff(gpu[0], cpu[0])).toBeLessThan(1e-6);
  });

  test('small host-resident inputs take the host path with the same results', async () => {
    tf.env().set('WEBGPU_CPU_FORWARD', true);
    try {
      const x = Float32Array.from({length: 100}, (_, i) => i * 0.37 - 15);
      const [cpu, gpu] = await both(() => tf.cos(tf.tensor1d(x)));
      expect(maxAbsDiff(gpu[0], cpu[0])).toBe(0);
    } finally {
      tf.env().set('WEBGPU_CPU_FORWARD', false);
    }
  });
});
