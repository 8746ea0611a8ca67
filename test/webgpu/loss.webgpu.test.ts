/**
 * causalLMLoss on webgpu with more than 2^24 logits, against a float64 loss computed on the host
 * from the same values. The loss used to pick each target through a flat int32 index
 * row * V + label, which webgpu does not compute exactly past 2^24: rows past the 4096th of a
 * V = 4096 batch read a neighbouring column (a 32 x 256 training batch trained on wrong targets).
 */

import {causalLMLoss} from '../../ops/loss';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

/** Mean -log softmax(logits[i])[label[i+1]] over counted positions, in float64. */
function referenceLoss(logits: Float32Array, labels: number[][], t: number, V: number): number {
  let total = 0,
    count = 0;
  labels.forEach((row, bi) => {
    for (let i = 0; i + 1 < t; i++) {
      const label = row[i + 1];
      if (label === -100) continue;
      const off = (bi * t + i) * V;
      let max = -Infinity;
      for (let j = 0; j < V; j++) max = Math.max(max, logits[off + j]);
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(logits[off + j] - max);
      total += -(logits[off + label] - max - Math.log(sum));
      count++;
    }
  });
  return total / count;
}

describeWebGPU('causalLMLoss on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  it('picks the right target past 2^24 logits (b=18, t=232, V=4096: 17.1M logits)', async () => {
    const b = 18,
      t = 232,
      V = 4096;
    const r = seededUniform(11);
    const values = Float32Array.from({length: b * t * V}, () => 8 * r() - 4);
    // Labels differ from their neighbours' columns' values by construction (random logits), and
    // some are -100; the last rows sit past index 2^24.
    const labels = Array.from({length: b}, () =>
      Array.from({length: t}, () => (r() < 0.1 ? -100 : Math.floor(r() * V))),
    );
    const logits = tf.tensor3d(values, [b, t, V]);
    const lab = tf.tensor2d(labels, [b, t], 'int32');
    const loss = causalLMLoss(lab, logits);
    const got = (await loss.data())[0];
    const want = referenceLoss(values, labels, t, V);
    expect(Math.abs(got - want) / want).toBeLessThan(1e-5);
    // And the gradient reaches exactly the picked columns: d loss / d logits = (softmax - onehot) / n.
    const g = tf.grad((x: tf.Tensor) => causalLMLoss(lab, x))(logits);
    const gd = (await g.data()) as Float32Array;
    const bi = b - 1,
      i = t - 3,
      label = labels[bi][i + 1];
    const n = labels.reduce((s, row) => s + row.slice(1).filter((l) => l !== -100).length, 0);
    const off = (bi * t + i) * V;
    let max = -Infinity,
      sum = 0;
    for (let j = 0; j < V; j++) max = Math.max(max, values[off + j]);
    for (let j = 0; j < V; j++) sum += Math.exp(values[off + j] - max);
    if (label !== -100) {
      const p = Math.exp(values[off + label] - max) / sum;
      expect(Math.abs(gd[off + label] - (p - 1) / n)).toBeLessThan(1e-9 + 1e-4 * Math.abs((p - 1) / n));
    }
    tf.dispose([logits, lab, loss, g]);
  }, 600000);
});
