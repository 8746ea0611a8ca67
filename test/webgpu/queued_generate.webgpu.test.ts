/**
 * Steps queued ahead of the host (src/generation/step_queue.ts) on SwiftShader: generate and
 * stream through the queued path against the path that reads each step's ids back before the
 * next step (queuedDecodeConfig.enabled = false) and against goldens: HF's greedy golden of
 * tiny-a, a random batch of 3 (left padding) where one row stops at an EOS, seeded GPU sampling
 * with a stop id, a caller's state (its exported tensors equal), stop strings, abort and break;
 * and the plain-WebGPU row argmax against its host reference.
 */

import * as fs from 'fs';
import * as path from 'path';
import {rowArgmaxReference} from '../../ops/row_argmax';
import {RowArgmaxRunner} from '../../ops/row_argmax/runner';
import type {GenerateOptions, TokenEvent} from '../../src/generation/generate';
import {GenerationState} from '../../src/generation/state';
import {queuedDecodeConfig, stepQueueStats} from '../../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {uniform} from './kernel_helpers';
import {MASK_3x5, PROMPTS_3x5, randomModel as randomModelOf, SMALL_CFG} from './random_model';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const golden = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8')).greedy as {
  prompt: number[][];
  sequence: number[][];
};

/** A seeded random model (the fused decode test's shape: untied head, biases, multi-query, window 8). */
const randomModel = (seed: number) => randomModelOf(SMALL_CFG, seed);

const PROMPTS = PROMPTS_3x5;
const MASK = MASK_3x5;

/** generate with the queue on or off; also the events and how many steps the queue ran. */
async function gen(
  model: RecurrentGemmaForCausalLM,
  prompts: number[][],
  opts: GenerateOptions,
  queued: boolean,
): Promise<{out: number[][]; events: TokenEvent[]; picks: number; queuedSteps: number}> {
  queuedDecodeConfig.enabled = queued;
  const events: TokenEvent[] = [];
  const s0 = {...stepQueueStats};
  try {
    const out = await model.generate(prompts, {...opts, onToken: (e) => events.push(e)});
    return {
      out,
      events,
      picks: stepQueueStats.picks - s0.picks,
      queuedSteps: stepQueueStats.queuedSteps - s0.queuedSteps,
    };
  } finally {
    queuedDecodeConfig.enabled = null;
  }
}

/** Every tensor of a state on the host, with its positions. */
async function exportState(s: GenerationState): Promise<{positions: number[]; tensors: number[][]}> {
  return {
    positions: [...s.positions],
    tensors: await Promise.all(s.tensors().map(async (t) => Array.from(await t.data()))),
  };
}

describeWebGPU('generation with steps queued ahead of the host', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    await tf.setBackend('webgpu');
  }, 120000);

  test('the plain-WebGPU row argmax equals its host reference (ties, NaN, rows of NaN)', async () => {
    const device = (tf.backend() as unknown as {device: GPUDevice}).device;
    const b = 4,
      n = 1000;
    const x = uniform(3, b * n, -1, 1);
    x[0 * n + 17] = 5; // row 0: a tie at 17 and 600, the first wins
    x[0 * n + 600] = 5;
    x[1 * n + 3] = NaN; // row 1: NaN before the maximum
    x[1 * n + 999] = 2;
    x.fill(NaN, 2 * n, 3 * n); // row 2: nothing but NaN
    const buf = device.createBuffer({size: x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST});
    device.queue.writeBuffer(buf, 0, x);
    const read = device.createBuffer({size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const am = new RowArgmaxRunner(device, n, b);
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(am.encode(enc, buf, b), 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const got = new Int32Array(read.getMappedRange().slice(0));
    read.unmap();
    [buf, read].forEach((t) => t.destroy());
    am.dispose();
    expect(Array.from(got)).toEqual(Array.from(rowArgmaxReference(x, b, n)));
    expect(Array.from(got.slice(0, 3))).toEqual([17, 999, -1]);
  });

  test('greedy: the HF golden of tiny-a, every step queued on the GPU', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const steps = golden.sequence[0].length - golden.prompt[0].length;
    const before = tf.memory().numTensors;
    const q = await gen(model, golden.prompt, {maxNewTokens: steps, temperature: 0, eosTokenId: []}, true);
    expect(q.out).toEqual(golden.sequence);
    // One pick per token; the step after the last token is not run (nobody keeps the state).
    expect(q.picks).toBe(steps);
    expect(q.queuedSteps).toBe(steps - 1);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  }, 300000);

  test('random model, batch 3 with left padding: a row that stops at an EOS leaves; the tokens are those of the host path and of cpu', async () => {
    const opts = {maxNewTokens: 10, temperature: 0, eosTokenId: [] as number[]};
    await tf.setBackend('cpu');
    const cpuModel = randomModel(7);
    const cpuFull = await cpuModel.generate(PROMPTS, {...opts, attentionMask: MASK});
    await tf.setBackend('webgpu');
    const model = randomModel(7);
    const full = await gen(model, PROMPTS, {...opts, attentionMask: MASK}, true);
    expect(full.out).toEqual(cpuFull);
    // Row 1 ends at its 4th token (an id rows 0 and 2 never produce before their end).
    const eos = full.out[1][3 + 3];
    const first = full.out[1].indexOf(eos, 3);
    const others = [0, 2].map((r) => full.out[r].slice(PROMPTS[r].length));
    expect(others.some((g) => g.includes(eos))).toBe(false);
    const withEos = {...opts, attentionMask: MASK, eosTokenId: eos};
    const cpuEos = await cpuModel.generate(PROMPTS, withEos);
    cpuModel.dispose();
    const q = await gen(model, PROMPTS, withEos, true);
    const host = await gen(model, PROMPTS, withEos, false);
    expect(host.picks).toBe(0);
    expect(q.out).toEqual(host.out);
    expect(q.out).toEqual(cpuEos);
    expect(q.out[1]).toEqual(full.out[1].slice(0, first + 1));
    expect(q.out[0]).toEqual(full.out[0]);
    expect(q.events).toEqual(host.events);
    expect(q.events.filter((e) => e.row === 1).pop()?.finishReason).toBe('eos');
    expect(q.picks).toBe(10);
    model.dispose();
  }, 300000);

  test('seeded temperature / top-p / top-k / penalty sampling on the GPU: the non-queued GPU sampler’s tokens; a stop id ends one row', async () => {
    const model = randomModel(9);
    const opts = {
      maxNewTokens: 12,
      temperature: 1.3,
      topP: 0.9,
      topK: 50,
      repetitionPenalty: 1.2,
      seed: 21,
      eosTokenId: [] as number[],
      attentionMask: MASK,
    };
    const host = await gen(model, PROMPTS, opts, false);
    const q = await gen(model, PROMPTS, opts, true);
    expect(q.out).toEqual(host.out);
    expect(q.picks).toBe(12);
    const stop = host.out[2][PROMPTS[2].length + 4];
    const withStop = {...opts, stopTokenIds: [stop]};
    const hs = await gen(model, PROMPTS, withStop, false);
    const qs = await gen(model, PROMPTS, withStop, true);
    expect(qs.out).toEqual(hs.out);
    expect(qs.events).toEqual(hs.events);
    expect(qs.out[2].length).toBeLessThanOrEqual(PROMPTS[2].length + 5);
    expect(qs.out[2][qs.out[2].length - 1]).toBe(stop);
    model.dispose();
  }, 300000);

  test('a caller’s state: afterwards it holds the prompt and every generated token of each row, equal to the non-queued path’s', async () => {
    const model = randomModel(11);
    const opts = {maxNewTokens: 9, temperature: 0, eosTokenId: [] as number[]};
    const full = await gen(model, [PROMPTS[0], PROMPTS[2]], opts, true);
    const stop = full.out[0][PROMPTS[0].length + 2];
    const withStop = {...opts, stopTokenIds: [stop]};
    const states: {positions: number[]; tensors: number[][]}[] = [];
    const outs: number[][][] = [];
    for (const queued of [false, true]) {
      const state = GenerationState.empty(model, 2);
      const before = tf.memory().numTensors;
      const r = await gen(model, [PROMPTS[0], PROMPTS[2]], {...withStop, state}, queued);
      expect(tf.memory().numTensors).toBe(before);
      outs.push(r.out);
      expect(state.positions).toEqual(r.out.map((row) => row.length));
      states.push(await exportState(state));
      // The next turn continues each row from its own last token.
      const next = await gen(model, [[5], [5]], {...opts, maxNewTokens: 2, state}, queued);
      for (let row = 0; row < 2; row++) {
        const ref = await gen(model, [[...r.out[row], 5]], {...opts, maxNewTokens: 2}, false);
        expect(next.out[row]).toEqual(ref.out[0].slice(r.out[row].length));
      }
      state.dispose();
    }
    expect(outs[1]).toEqual(outs[0]);
    expect(outs[1][0].length).toBeLessThan(full.out[0].length);
    expect(states[1]).toEqual(states[0]);
    model.dispose();
  }, 300000);

  test('stop strings: the queued path ends the row where the host path does, with the same texts', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const tok = await GemmaTokenizer.load(path.join(__dirname, '../fixtures/tokenizer/tiny.model'));
    const prompt = [2, 17, 33, 90, 41, 7];
    // Seed 3 ends in a run of a two-letter token (seed 11's in byte tokens, which print only when whole).
    const base = {maxNewTokens: 40, temperature: 1.0, seed: 3, eosTokenId: [] as number[], tokenizer: tok};
    const full = await gen(model, [prompt], base, true);
    const gen0 = full.out[0].slice(prompt.length);
    const text = tok.decode(gen0, {skipSpecial: true});
    const stopStr = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    expect(stopStr.length).toBe(3);
    let k = 1;
    while (!tok.decode(gen0.slice(0, k), {skipSpecial: true}).includes(stopStr)) k++;
    const q = await gen(model, [prompt], {...base, stopStrings: [stopStr]}, true);
    const host = await gen(model, [prompt], {...base, stopStrings: [stopStr]}, false);
    expect(q.out[0]).toEqual(full.out[0].slice(0, prompt.length + k));
    expect(q.events).toEqual(host.events);
    expect(q.out).toEqual(host.out);
    expect(q.events[q.events.length - 1].finishReason).toBe('stop_string');
    expect(q.events.map((e) => e.text).join('')).toBe(text.slice(0, text.indexOf(stopStr)));
    model.dispose();
  }, 300000);

  test('an abort stops after the tokens handed out (a caller’s state holds exactly those); breaking out of stream frees everything', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const prompt = golden.prompt[0];
    const base = {maxNewTokens: 50, temperature: 0, eosTokenId: [] as number[]};
    const full = await gen(model, [prompt], {...base, maxNewTokens: 5}, true);
    for (const keep of [false, true]) {
      const ac = new AbortController();
      let n = 0;
      const state = keep ? GenerationState.empty(model, 1) : null;
      queuedDecodeConfig.enabled = true;
      const [out] = await model.generate([prompt], {
        ...base,
        state,
        signal: ac.signal,
        onToken: () => {
          if (++n === 5) ac.abort();
        },
      });
      queuedDecodeConfig.enabled = null;
      expect(out).toEqual(full.out[0]);
      if (state != null) {
        expect(state.positions).toEqual([prompt.length + 5]);
        const ref = GenerationState.empty(model, 1);
        await gen(model, [prompt], {...base, maxNewTokens: 5, state: ref}, false);
        expect(await exportState(state)).toEqual(await exportState(ref));
        [state, ref].forEach((s) => s.dispose());
      }
    }
    const before = tf.memory().numTensors;
    queuedDecodeConfig.enabled = true;
    let n = 0;
    const got: number[] = [];
    for await (const e of model.stream([prompt], base)) {
      got.push(e.tokenId);
      if (++n === 4) break;
    }
    queuedDecodeConfig.enabled = null;
    expect(got).toEqual(full.out[0].slice(prompt.length, prompt.length + 4));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  }, 300000);
});
