/**
 * Compares the webgpu backend with cpu on one model and on the ops it uses, layer by layer, to
 * find where a GPU computes a different function (a model trained on that GPU fits its quirks).
 *   node dist/bench/diagnose_webgpu.js MODEL_DIR TOKENS.u16
 */
import * as fs from 'fs';
import {rgLruScan} from '../ops/rg_lru_scan';
import {useBackend} from '../src/backend';
import {relativeError} from '../src/bench/common';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';

async function run(backend: string, dir: string, rows: number[][]) {
  await useBackend(backend);
  const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  const pos = rows.map((r) => r.map((_, i) => i));
  const out = m.forward({inputIds: rows, labels: rows, positionIds: pos, outputHiddenStates: true});
  const hs = await Promise.all(out.hiddenStates!.map((h) => h.data() as Promise<Float32Array>));
  const loss = (await out.loss!.data())[0];
  // The ops alone, on fixed pseudo-random inputs.
  const gen = (n: number, s: number) => Float32Array.from({length: n}, (_, i) => Math.sin(i * 12.9898 + s) * 0.5 + 0.5);
  const ops: Record<string, Float32Array> = {};
  for (const [b, t, e] of [
    [4, 256, 256],
    [128, 256, 256],
    [1, 2048, 64],
  ]) {
    const a = tf.tensor3d(
      gen(b * t * e, 1).map((v) => 0.5 + 0.49 * v),
      [b, t, e],
    );
    const x = tf.tensor3d(gen(b * t * e, 2), [b, t, e]);
    ops[`scan ${b}x${t}x${e}`] = (await rgLruScan(a, x).h.data()) as Float32Array;
    const g = tf.grads((aa: tf.Tensor, xx: tf.Tensor) => tf.sum(tf.mul(rgLruScan(aa, xx).h, x)))([a, x]);
    ops[`scan grad a ${b}x${t}x${e}`] = (await g[0].data()) as Float32Array;
  }
  for (const [m1, k, n] of [
    [32768, 256, 256],
    [32768, 256, 4096],
    [128, 256, 384],
    [1, 256, 4096],
  ]) {
    const A = tf.tensor2d(
      gen(m1 * k, 3).map((v) => v - 0.5),
      [m1, k],
    );
    const B = tf.tensor2d(
      gen(n * k, 4).map((v) => v - 0.5),
      [n, k],
    );
    ops[`matMul ${m1}x${k} . (${n}x${k})^T`] = (await tf.matMul(A, B, false, true).data()) as Float32Array;
  }
  return {loss, hs, ops};
}

(async () => {
  const [dir, tokFile] = process.argv.slice(2);
  const b = fs.readFileSync(tokFile);
  const ev = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  const rows = [0, 1, 2, 3].map((r) => Array.from(ev.slice(r * 256, r * 256 + 256)));
  const cpu = await run('cpu', dir, rows);
  const gpu = await run('webgpu', dir, rows);
  console.log(`loss cpu ${cpu.loss.toFixed(4)} webgpu ${gpu.loss.toFixed(4)}`);
  cpu.hs.forEach((h, i) => console.log(`hidden_states.${i} rel ${relativeError(gpu.hs[i], h).toExponential(2)}`));
  for (const k of Object.keys(cpu.ops))
    console.log(`${k} rel ${relativeError(gpu.ops[k], cpu.ops[k]).toExponential(2)}`);
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
