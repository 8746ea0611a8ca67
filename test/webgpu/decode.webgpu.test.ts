/**
 * Cached decoding on webgpu: prefill (in chunks) + decodeStep against the full-sequence forward
 * at every position, past the attention window (tiny-a: 64) so the cache wraps, for a batch of
 * two rows, one of them left-padded. Also one comparison with the cpu backend.
 *
 * Runs with tfjs's packed matMul program: on SwiftShader its default choice for one or two rows
 * (the reduce / small-output programs, made for real GPUs) takes 50-100 ms per call, 4.4 s per
 * tiny-a decode step against 0.2 s. Shapes are few (equal prefill chunks, one full forward)
 * because SwiftShader spends most of this file compiling pipelines.
 */

import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

const DIR = path.join(__dirname, '../fixtures/tiny-a');
// float32 on both paths; the cached path sums attention over the cache in another order.
// Measured on SwiftShader: ~1e-6.
const TOL = 2e-5;

function randomIds(seed: number, n: number, vocab: number): number[] {
  const r = seededUniform(seed);
  return Array.from({length: n}, () => 3 + Math.floor(r() * (vocab - 3)));
}

async function rows(t: tf.Tensor): Promise<Float32Array[]> {
  const data = (await t.data()) as Float32Array;
  const [b, V] = t.shape;
  t.dispose();
  return Array.from({length: b}, (_, i) => data.subarray(i * V, (i + 1) * V));
}

// The matMul shader variants are keyed by whether rows fill 32-row tiles: 2 x 32-step chunks and
// the 2 x 80-step full forward share theirs (each costs SwiftShader 1-3 s to compile).
const V = 512,
  T = 80,
  PROMPT = 64,
  PAD = 5,
  CHUNK = 32;
const A = randomIds(1, T, V),
  B = randomIds(2, T - PAD, V);
// Row B is shorter by PAD: it starts with padding (left padding, as generation pads).
const IDS = [A, [...Array(PAD).fill(0), ...B]];
const MASK = [Array(T).fill(1), [...Array(PAD).fill(0), ...Array(T - PAD).fill(1)]];

/** Prefill PROMPT steps in chunks, then decode to T: the logits after steps PROMPT-1 .. T-1, per row. */
async function cachedLogits(model: RecurrentGemmaForCausalLM): Promise<Float32Array[][]> {
  const state = model.prefill(
    IDS.map((r) => r.slice(0, PROMPT)),
    {attentionMask: MASK.map((r) => r.slice(0, PROMPT)), chunkSize: CHUNK},
  );
  const out: Float32Array[][] = [];
  try {
    out.push(await rows(tf.clone(state.logits)));
    for (let i = PROMPT; i < T; i++) out.push(await rows(model.decodeStep(state, [IDS[0][i], IDS[1][i]]).logits));
  } finally {
    state.dispose();
  }
  return out;
}

describeWebGPU('cached decoding on webgpu', () => {
  let model: RecurrentGemmaForCausalLM;
  beforeAll(async () => {
    await initNodeWebGPU();
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3); // MatMulPackedProgram: see the header
    model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  });
  afterAll(() => {
    model?.dispose();
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
  });

  test(`prefill in chunks + decode equals the full forward at every position, and the cpu backend's decode (${TOL.toExponential()})`, async () => {
    const before = tf.memory().numTensors;
    const got = await cachedLogits(model);
    expect(tf.memory().numTensors).toBe(before);
    const {logits} = model.forward({inputIds: IDS, attentionMask: MASK});
    const full = await rows(tf.reshape(logits, [2 * T, V]));
    logits.dispose();
    let worst = 0;
    got.forEach((r, j) =>
      r.forEach((g, row) => {
        worst = Math.max(worst, relError(g, full[row * T + PROMPT - 1 + j]));
      }),
    );
    console.log(
      `webgpu cached vs full forward: worst relative error ${worst.toExponential(2)} over ${got.length} positions x 2 rows`,
    );
    expect(worst).toBeLessThan(TOL);

    // A model of its own on cpu: moving webgpu weights to another backend needs a sync read.
    await tf.setBackend('cpu');
    let cpu: Float32Array[][];
    try {
      const cpuModel = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
      cpu = await cachedLogits(cpuModel);
      cpuModel.dispose();
    } finally {
      await tf.setBackend('webgpu');
    }
    let worstCpu = 0;
    got.forEach((r, j) =>
      r.forEach((g, row) => {
        worstCpu = Math.max(worstCpu, relError(g, cpu[j][row]));
      }),
    );
    console.log(`webgpu vs cpu cached decode: worst relative difference ${worstCpu.toExponential(2)}`);
    expect(worstCpu).toBeLessThan(TOL);
  });
});
