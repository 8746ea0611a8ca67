/**
 * Two picks in flight (src/generation/step_queue.ts, queuedDecodeConfig.depth = 2, generate's
 * default without a caller's state) on SwiftShader: the tokens and events of depth 2 against
 * depth 1 and against the path that reads each step's ids back before the next step
 * (queuedDecodeConfig.enabled = false), greedy (also against cpu) and seeded temperature / top-p
 * sampling, at b = 1 and b = 3 with rows that stop at different steps (EOS, stop ids, stop
 * strings, max tokens); a caller's state (kept at depth 1, equal to the unqueued path's); an
 * abort from a timer and a break mid-generation (no error, no rejection left unhandled, no tensor
 * left); stepQueueStats showing two picks in flight at depth 2 and one at depth 1.
 */

import * as path from 'path';
import type {GenerateOptions, TokenEvent} from '../../src/generation/generate';
import {GenerationState} from '../../src/generation/state';
import {queuedDecodeConfig, stepQueueStats} from '../../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {MASK_3x5, PROMPTS_3x5, randomModel as randomModelOf, SMALL_CFG} from './random_model';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const randomModel = (seed: number) => randomModelOf(SMALL_CFG, seed);

const PROMPTS = PROMPTS_3x5;
const MASK = MASK_3x5;
/** Prompt tokens per row without the padding (what generate's rows start with). */
const REAL = MASK.map((m) => m.reduce((a, x) => a + x, 0));

/** 'host': ids read back before each step; 1, 2: the queue at that depth. */
type Mode = 'host' | 1 | 2;

interface Run {
  out: number[][];
  events: TokenEvent[];
  picks: number;
  queuedSteps: number;
  ahead: number;
  maxInFlight: number;
}

async function gen(
  model: RecurrentGemmaForCausalLM,
  prompts: number[][],
  opts: GenerateOptions,
  mode: Mode,
): Promise<Run> {
  queuedDecodeConfig.enabled = mode !== 'host';
  queuedDecodeConfig.depth = mode === 'host' ? null : mode;
  const events: TokenEvent[] = [];
  const s0 = {...stepQueueStats};
  stepQueueStats.maxInFlight = 0;
  try {
    const out = await model.generate(prompts, {...opts, onToken: (e) => events.push(e)});
    return {
      out,
      events,
      picks: stepQueueStats.picks - s0.picks,
      queuedSteps: stepQueueStats.queuedSteps - s0.queuedSteps,
      ahead: stepQueueStats.ahead - s0.ahead,
      maxInFlight: stepQueueStats.maxInFlight,
    };
  } finally {
    queuedDecodeConfig.enabled = null;
    queuedDecodeConfig.depth = null;
  }
}

/** The three modes; each one's tokens and events equal the host path's. */
async function allModes(model: RecurrentGemmaForCausalLM, prompts: number[][], opts: GenerateOptions) {
  const host = await gen(model, prompts, opts, 'host');
  const d1 = await gen(model, prompts, opts, 1);
  const d2 = await gen(model, prompts, opts, 2);
  expect(host.picks).toBe(0);
  expect(d1.out).toEqual(host.out);
  expect(d2.out).toEqual(host.out);
  expect(d1.events).toEqual(host.events);
  expect(d2.events).toEqual(host.events);
  // Depth 1: each pick submitted after the previous one's ids came back; depth 2: two in flight.
  expect(d1.ahead).toBe(0);
  expect(d1.maxInFlight).toBe(1);
  expect(d2.maxInFlight).toBe(2);
  expect(d2.ahead).toBeGreaterThan(0);
  return {host, d1, d2};
}

/** Generated lengths per row and each row's finish reason. */
const finishes = (r: Run) =>
  r.out.map((_, row) => {
    const evs = r.events.filter((e) => e.row === row);
    return {n: evs.length, why: evs[evs.length - 1]?.finishReason};
  });

/** Every tensor of a state on the host, with its positions. */
async function exportState(s: GenerationState): Promise<{positions: number[]; tensors: number[][]}> {
  return {
    positions: [...s.positions],
    tensors: await Promise.all(s.tensors().map(async (t) => Array.from(await t.data()))),
  };
}

describeWebGPU('generation with two picks in flight', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  beforeAll(async () => {
    await initNodeWebGPU();
    await tf.setBackend('webgpu');
    process.on('unhandledRejection', onUnhandled);
  }, 120000);

  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  afterEach(() => {
    expect(unhandled).toEqual([]);
  });

  test('greedy, b = 1: depth 2 = depth 1 = host path; no pick or step past max tokens', async () => {
    const model = randomModel(5);
    const n = 12;
    const before = tf.memory().numTensors;
    const {d1, d2} = await allModes(model, [PROMPTS[0]], {maxNewTokens: n, temperature: 0, eosTokenId: []});
    expect(d2.out[0].length).toBe(PROMPTS[0].length + n);
    for (const r of [d1, d2]) {
      expect(r.picks).toBe(n);
      expect(r.queuedSteps).toBe(n - 1); // the last token's step is not run: nobody keeps the state
    }
    // Every pick but the first two and the last went out while the one before was in flight.
    expect(d2.ahead).toBeGreaterThanOrEqual(n - 3);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  }, 600000);

  test('greedy, b = 3 with left padding: rows stop at an EOS, a stop id and max tokens, at different steps; = cpu', async () => {
    const base = {maxNewTokens: 10, temperature: 0, eosTokenId: [] as number[], attentionMask: MASK};
    const model = randomModel(7);
    const full = await gen(model, PROMPTS, base, 2);
    // An EOS from row 1 (its 3rd token) and a stop id from row 2 (its 6th). Each row stops at the
    // first of them it produces (the full run's tokens: rows are independent), else at max tokens.
    const gens = full.out.map((r, i) => r.slice(REAL[i]));
    const eos = gens[1][2],
      stop = gens[2][5];
    const opts = {...base, eosTokenId: eos, stopTokenIds: [stop]};
    const want = gens.map((g) => {
      const at = g.findIndex((id) => id === eos || id === stop);
      return at < 0 ? {n: 10, why: 'length'} : {n: at + 1, why: g[at] === eos ? 'eos' : 'stop_token'};
    });
    console.log(`greedy b = 3: ${JSON.stringify(gens)}; finishes ${JSON.stringify(want)}`);
    const {d2} = await allModes(model, PROMPTS, opts);
    expect(finishes(d2)).toEqual(want);
    expect(new Set(want.map((w) => w.n)).size).toBe(3); // three rows, three different ends
    expect(d2.out.map((r, i) => r.slice(REAL[i]))).toEqual(gens.map((g, i) => g.slice(0, want[i].n)));
    await tf.setBackend('cpu');
    const cpuModel = randomModel(7);
    const cpu = await cpuModel.generate(PROMPTS, opts);
    cpuModel.dispose();
    await tf.setBackend('webgpu');
    expect(d2.out).toEqual(cpu);
    model.dispose();
  }, 600000);

  test('seeded temperature / top-p / top-k / penalty, b = 3 (fused prefill) and b = 1: depth 2 = depth 1 = host path; stop ids end two rows', async () => {
    const model = randomModel(9);
    const prompts = [PROMPTS[0], PROMPTS[2], [2, 60, 61, 62, 63]];
    const base = {maxNewTokens: 12, temperature: 1.3, topP: 0.9, topK: 50, repetitionPenalty: 1.2, seed: 21};
    const opts = {...base, eosTokenId: [] as number[]};
    const full = await gen(model, prompts, opts, 2);
    const gens = full.out.map((r, i) => r.slice(prompts[i].length));
    // Stop ids: row 0's 3rd token and row 2's 7th, unless they appear earlier in other rows.
    const stops = [gens[0][2], gens[2][6]];
    const {d2} = await allModes(model, prompts, {...opts, stopTokenIds: stops});
    const f = finishes(d2);
    // Each row stops at the first of the ids it draws (the rows draw independently of the others).
    f.forEach(({n, why}, row) => {
      const at = gens[row].findIndex((id) => stops.includes(id));
      expect({n, why}).toEqual(at >= 0 ? {n: at + 1, why: 'stop_token'} : {n: 12, why: 'length'});
    });
    expect(new Set(f.map((x) => x.n)).size).toBeGreaterThan(1); // rows ended at different steps
    expect(d2.out).toEqual(full.out.map((r, i) => r.slice(0, prompts[i].length + f[i].n)));
    // b = 1: row 0 alone draws what it draws in the batch (seed + row).
    const one = await allModes(model, [prompts[0]], {...opts, temperature: 0.8, topP: 0.95, topK: undefined});
    expect(one.d2.out[0].length).toBe(prompts[0].length + 12);
    model.dispose();
  }, 600000);

  test('stop strings, b = 3: rows end where the host path ends them, with the same texts', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const tok = await GemmaTokenizer.load(path.join(__dirname, '../fixtures/tokenizer/tiny.model'));
    const prompts = [
      [2, 17, 33, 90, 41, 7],
      [2, 17, 33, 90, 41, 7],
      [2, 17, 33, 90, 41, 7],
    ];
    const base = {maxNewTokens: 30, temperature: 1.0, seed: 3, eosTokenId: [] as number[], tokenizer: tok};
    const full = await gen(model, prompts, base, 2);
    const text = tok.decode(full.out[0].slice(prompts[0].length), {skipSpecial: true});
    const stopStr = text.slice(Math.floor(text.length / 3), Math.floor(text.length / 3) + 2);
    expect(stopStr.length).toBe(2);
    const {d2} = await allModes(model, prompts, {...base, stopStrings: [stopStr]});
    const f = finishes(d2);
    expect(f[0].why).toBe('stop_string');
    expect(f[0].n).toBeLessThan(30);
    f.forEach(({n, why}, row) => {
      const gen = full.out[row].slice(prompts[row].length);
      // The row's first token whose text completes the stop string, or max tokens.
      let k = 1;
      while (k <= gen.length && !tok.decode(gen.slice(0, k), {skipSpecial: true}).includes(stopStr)) k++;
      expect({n, why}).toEqual(k <= gen.length ? {n: k, why: 'stop_string'} : {n: 30, why: 'length'});
    });
    model.dispose();
  }, 600000);

  test('a caller’s state: kept at depth 1 (nothing in flight ahead); state and tokens equal the host path’s', async () => {
    const model = randomModel(11);
    const prompts = [PROMPTS[0], PROMPTS[2], [2, 60, 61, 62, 63]];
    for (const sampling of [{temperature: 0}, {temperature: 1.1, topP: 0.9, seed: 4}]) {
      const opts = {...sampling, maxNewTokens: 8, eosTokenId: [] as number[]};
      const full = await gen(model, prompts, opts, 2);
      const gens = full.out.map((r, i) => r.slice(prompts[i].length));
      const withStop = {...opts, eosTokenId: gens[1][2], stopTokenIds: [gens[2][4]]};
      const states: {positions: number[]; tensors: number[][]}[] = [];
      const runs: Run[] = [];
      for (const mode of ['host', 2] as Mode[]) {
        const state = GenerationState.empty(model, 3);
        const before = tf.memory().numTensors;
        const r = await gen(model, prompts, {...withStop, state}, mode);
        expect(tf.memory().numTensors).toBe(before);
        expect(state.positions).toEqual(r.out.map((row) => row.length));
        states.push(await exportState(state));
        runs.push(r);
        state.dispose();
      }
      expect(runs[1].out).toEqual(runs[0].out);
      expect(runs[1].events).toEqual(runs[0].events);
      expect(runs[1].ahead).toBe(0);
      expect(runs[1].maxInFlight).toBe(1);
      expect(states[1]).toEqual(states[0]);
      expect(new Set(finishes(runs[1]).map((x) => x.n)).size).toBeGreaterThan(1);
    }
    model.dispose();
  }, 600000);

  test('an abort from a timer and a break mid-generation at depth 2: no error, the tokens handed out, nothing left', async () => {
    const model = randomModel(5);
    const prompt = PROMPTS[0];
    const base = {maxNewTokens: 300, temperature: 0, eosTokenId: [] as number[]};
    const ref = await gen(model, [prompt], {...base, maxNewTokens: 40}, 1);
    const before = tf.memory().numTensors;
    // A timer fires while the loop runs (it yields to the event loop between steps).
    queuedDecodeConfig.depth = 2;
    const ac = new AbortController();
    const got: number[] = [];
    let timer: NodeJS.Timeout | null = null;
    const out = await model.generate([prompt], {
      ...base,
      signal: ac.signal,
      onToken: (e) => {
        got.push(e.tokenId);
        if (got.length === 3) timer = setTimeout(() => ac.abort(), 50);
      },
    });
    if (timer != null) clearTimeout(timer);
    expect(got.length).toBeLessThan(300);
    expect(out[0]).toEqual([...prompt, ...got]);
    const k = Math.min(got.length, 40);
    expect(got.slice(0, k)).toEqual(ref.out[0].slice(prompt.length, prompt.length + k));
    // An abort from a token's own event: exactly the tokens handed out.
    const ac2 = new AbortController();
    let n = 0;
    const out2 = await model.generate([prompt], {
      ...base,
      signal: ac2.signal,
      onToken: () => {
        if (++n === 5) ac2.abort();
      },
    });
    expect(out2[0]).toEqual(ref.out[0].slice(0, prompt.length + 5));
    // Breaking out of stream.
    const seen: number[] = [];
    for await (const e of model.stream([prompt], base)) {
      seen.push(e.tokenId);
      if (seen.length === 4) break;
    }
    queuedDecodeConfig.depth = null;
    expect(seen).toEqual(ref.out[0].slice(prompt.length, prompt.length + 4));
    // Reads of picks left in flight fail quietly once the queue is gone.
    await new Promise((r) => setTimeout(r, 200));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  }, 600000);

  test('a depth other than 1 or 2 is refused in one line', async () => {
    const model = randomModel(5);
    queuedDecodeConfig.depth = 3;
    await expect(model.generate([PROMPTS[0]], {maxNewTokens: 2})).rejects.toThrow(
      /^queuedDecodeConfig.depth must be 1 or 2, got 3$/,
    );
    queuedDecodeConfig.depth = null;
    const saved = process.env.GRIFFIN_QUEUE_DEPTH;
    for (const v of ['0', '3', 'two']) {
      process.env.GRIFFIN_QUEUE_DEPTH = v;
      await expect(model.generate([PROMPTS[0]], {maxNewTokens: 2})).rejects.toThrow(
        `GRIFFIN_QUEUE_DEPTH must be 1 or 2, got "${v}"`,
      );
    }
    process.env.GRIFFIN_QUEUE_DEPTH = '1';
    const r = await gen(model, [PROMPTS[0]], {maxNewTokens: 4, temperature: 0}, 'host');
    queuedDecodeConfig.enabled = true;
    stepQueueStats.maxInFlight = 0;
    const viaEnv = await model.generate([PROMPTS[0]], {maxNewTokens: 4, temperature: 0});
    queuedDecodeConfig.enabled = null;
    expect(viaEnv).toEqual(r.out);
    expect(stepQueueStats.maxInFlight).toBe(1);
    if (saved == null) delete process.env.GRIFFIN_QUEUE_DEPTH;
    else process.env.GRIFFIN_QUEUE_DEPTH = saved;
    model.dispose();
  }, 600000);
});
