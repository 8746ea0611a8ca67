/**
 * The fused causal conv1d kernel (ops/causal_conv1d/webgpu.ts) against the composite of
 * ops/conv1d.ts on the cpu backend, on random inputs: with and without a carried history,
 * document starts (segments) and padding, widths 2..4, chunks shorter than the history. Under a
 * gradient tape the composite must run instead, with gradients equal to the cpu's.
 */

import {causalConv1dConfig} from '../../ops/causal_conv1d';
import {causalConv1d} from '../../ops/conv1d';
import {disposeSequenceInfo, sequenceInfo} from '../../ops/sequence';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {maxAbsDiff, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

interface Case {
  b: number;
  t: number;
  e: number;
  w: number;
  hist: boolean;
  seg: boolean;
  pad: boolean;
}

function data(c: Case, seed: number) {
  const r = seededUniform(seed);
  const u = (n: number) => Float32Array.from({length: n}, () => 2 * r() - 1);
  // Position ids restart (a document start) somewhere inside each row when seg; padding: the
  // first steps of row 0 are masked.
  const pos = Array.from({length: c.b}, (_, bi) =>
    Array.from({length: c.t}, (_, ti) => {
      const restart = c.seg ? 1 + ((bi * 7 + 3) % Math.max(c.t - 1, 1)) : -1;
      return c.seg && ti >= restart ? ti - restart : ti + 5;
    }),
  );
  const mask = Array.from({length: c.b}, (_, bi) =>
    Array.from({length: c.t}, (_, ti) => (c.pad && bi === 0 && ti < 2 ? 0 : 1)),
  );
  return {x: u(c.b * c.t * c.e), w: u(c.e * c.w), bias: u(c.e), hist: u(c.b * (c.w - 1) * c.e), pos, mask};
}

/** Runs the convolution on the current backend from host data; returns y and state values. */
async function run(c: Case, d: ReturnType<typeof data>) {
  // Without document starts or padding there is no SequenceInfo (so no segments), as in a
  // caller's plain forward; a history then runs unmasked.
  const info =
    c.seg || c.pad
      ? sequenceInfo(c.b, c.t, {positionIds: c.seg ? d.pos : null, attentionMask: c.pad ? d.mask : null})
      : null;
  const x = tf.tensor3d(d.x, [c.b, c.t, c.e]),
    w = tf.tensor3d(d.w, [c.e, 1, c.w]),
    bias = tf.tensor1d(d.bias);
  const hist = c.hist ? tf.tensor3d(d.hist, [c.b, c.w - 1, c.e]) : null;
  const {y, state} = causalConv1d(x, w, bias, info, hist);
  const out = {y: (await y.data()) as Float32Array, state: (await state.data()) as Float32Array};
  tf.dispose([x, w, bias, y, state, ...(hist ? [hist] : [])]);
  if (info) disposeSequenceInfo(info);
  return out;
}

const CASES: Case[] = [];
for (const [b, t, e, w] of [
  [1, 1, 8, 4],
  [2, 7, 5, 4],
  [3, 33, 16, 3],
  [2, 2, 6, 4],
  [1, 50, 64, 2],
]) {
  for (const hist of [false, true]) {
    for (const [seg, pad] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]) {
      if (t < 2 && seg) continue;
      CASES.push({b, t, e, w, hist, seg, pad});
    }
  }
}

describeWebGPU('fused causal conv1d on webgpu', () => {
  const programs = new Map<string, number>();
  beforeAll(async () => {
    await initNodeWebGPU();
    // Count the programs run, to see which path was taken.
    const backend = tf.backend() as unknown as {runWebGPUProgram: (p: {shaderKey: string}, ...r: unknown[]) => unknown};
    const orig = backend.runWebGPUProgram;
    backend.runWebGPUProgram = function (this: unknown, p: {shaderKey: string}, ...r: unknown[]) {
      const k = p.shaderKey.split('_')[0];
      programs.set(k, (programs.get(k) ?? 0) + 1);
      return orig.call(this, p, ...r);
    };
  });

  CASES.forEach((c, i) => {
    const name = `b=${c.b} t=${c.t} e=${c.e} w=${c.w}${c.hist ? ', history' : ''}${c.seg ? ', document starts' : ''}${c.pad ? ', padding' : ''}`;
    test(`y and state equal the cpu composite's, ${name}`, async () => {
      const d = data(c, 100 + i);
      await tf.setBackend('cpu');
      const cpu = await run(c, d);
      await tf.setBackend('webgpu');
      programs.clear();
      const gpu = await run(c, d);
      expect(programs.get('griffinCausalConv1d')).toBe(1);
      expect(programs.get('griffinCausalConv1dState')).toBe(1);
      expect(maxAbsDiff(gpu.y, cpu.y)).toBeLessThan(1e-6);
      expect(maxAbsDiff(gpu.state, cpu.state)).toBeLessThan(1e-6);
    });
  });

  test('the composite runs when disabled, with the same results', async () => {
    const c: Case = {b: 2, t: 9, e: 7, w: 4, hist: true, seg: true, pad: true},
      d = data(c, 7);
    const fused = await run(c, d);
    causalConv1dConfig.enabled = false;
    try {
      programs.clear();
      const composite = await run(c, d);
      expect(programs.has('griffinCausalConv1d')).toBe(false);
      expect(maxAbsDiff(fused.y, composite.y)).toBeLessThan(1e-6);
      expect(maxAbsDiff(fused.state, composite.state)).toBeLessThan(1e-6);
    } finally {
      causalConv1dConfig.enabled = true;
    }
  });

  test("under a gradient tape the composite runs, and gradients equal the cpu's", async () => {
    const c: Case = {b: 2, t: 9, e: 7, w: 4, hist: true, seg: true, pad: false},
      d = data(c, 8);
    const grads = async () => {
      const info = sequenceInfo(c.b, c.t, {positionIds: d.pos});
      const x = tf.tensor3d(d.x, [c.b, c.t, c.e]),
        w = tf.tensor3d(d.w, [c.e, 1, c.w]),
        bias = tf.tensor1d(d.bias);
      const hist = tf.tensor3d(d.hist, [c.b, c.w - 1, c.e]);
      const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor, hh: tf.Tensor) => {
        const {y, state} = causalConv1d(xx, ww, bb, info, hh);
        return tf.add(tf.sum(tf.mul(y, y)), tf.sum(state)) as tf.Scalar;
      })([x, w, bias, hist]);
      const out = await Promise.all(g.map(async (t) => (await t.data()) as Float32Array));
      tf.dispose([x, w, bias, hist, ...g]);
      disposeSequenceInfo(info);
      return out;
    };
    await tf.setBackend('cpu');
    const cpu = await grads();
    await tf.setBackend('webgpu');
    programs.clear();
    const gpu = await grads();
    expect(programs.has('griffinCausalConv1d')).toBe(false);
    gpu.forEach((g, i) => expect(maxAbsDiff(g, cpu[i])).toBeLessThan(1e-5));
  });
});
