/**
 * model.generate / model.stream on tiny-a: HF's greedy golden, greedy = argmax of the full forward,
 * left-padded batches with rows stopping early, seeds, stop strings and ids, abort, chat-style
 * continuation of a state, and constant memory.
 */
import * as path from 'path';
import type {TokenEvent} from '../../src/generation/generate';
import {GenerationState} from '../../src/generation/state';
import {queuedDecodeConfig} from '../../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {seededUniform} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const golden = JSON.parse(require('fs').readFileSync(path.join(DIR, 'golden.json'), 'utf8'));

let model: RecurrentGemmaForCausalLM;
let tok: GemmaTokenizer;
const V = 512; // tiny-a's vocabulary (checked below): ids are drawn while the tests are collected
beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  tok = await GemmaTokenizer.load(path.join(__dirname, '../fixtures/tokenizer/tiny.model'));
  expect(model.config.vocab_size).toBe(V);
});
afterAll(() => model.dispose());

function randomIds(seed: number, n: number, lo = 3): number[] {
  const r = seededUniform(seed);
  return Array.from({length: n}, () => lo + Math.floor(r() * (V - lo)));
}

function argmax(row: number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

test("greedy reproduces golden.json's greedy.sequence (HF transformers) exactly", async () => {
  const {prompt, sequence} = golden.greedy as {prompt: number[][]; sequence: number[][]};
  const out = await model.generate(prompt, {maxNewTokens: sequence[0].length - prompt[0].length, temperature: 0});
  expect(out).toEqual(sequence);
});

test('greedy equals the argmax of the full forward at every new position (60 tokens, past the window)', async () => {
  const prompt = randomIds(1, 20);
  const [out] = await model.generate([prompt], {maxNewTokens: 60, temperature: 0, eosTokenId: []});
  expect(out.length).toBe(80);
  const {logits} = model.forward({inputIds: [out]});
  const rows = (logits.arraySync() as number[][][])[0];
  logits.dispose();
  for (let i = prompt.length; i < out.length; i++) expect([i, out[i]]).toEqual([i, argmax(rows[i - 1])]);
});

describe('batches', () => {
  const prompts = [randomIds(2, 4), randomIds(3, 17), randomIds(4, 9)];
  const T = 17;
  const padded = prompts.map((p) => [...Array(T - p.length).fill(0), ...p]);
  const attentionMask = prompts.map((p) => [...Array(T - p.length).fill(0), ...Array(p.length).fill(1)]);

  test('left-padded rows give exactly what each prompt gives alone; a row that stops leaves, the others go on', async () => {
    const n = 24;
    const alone0 = [];
    for (const p of prompts)
      alone0.push((await model.generate([p], {maxNewTokens: n, temperature: 0, eosTokenId: []}))[0]);
    // A stop id that ends row 1 early but (in their own runs) neither of the others.
    const gen = alone0.map((s, i) => s.slice(prompts[i].length));
    const stop = gen[1].find((id, k) => k >= 2 && k < n - 4 && !gen[0].includes(id) && !gen[2].includes(id));
    expect(stop).toBeDefined();
    const opts = {maxNewTokens: n, temperature: 0, eosTokenId: [] as number[], stopTokenIds: [stop!]};
    const alone = [];
    for (const p of prompts) alone.push((await model.generate([p], opts))[0]);
    expect(alone[1].length).toBeLessThan(prompts[1].length + n);
    expect(alone[1][alone[1].length - 1]).toBe(stop);
    const events: TokenEvent[] = [];
    const batch = await model.generate(padded, {...opts, attentionMask, onToken: (e) => events.push(e)});
    expect(batch).toEqual(alone);
    // Row 1's events end at its stop; rows 0 and 2 run to maxNewTokens.
    const last = (r: number) => events.filter((e) => e.row === r).pop()!;
    expect(last(1).finishReason).toBe('stop_token');
    expect(last(0).finishReason).toBe('length');
    expect(events.filter((e) => e.row === 1).length).toBe(alone[1].length - prompts[1].length);
    expect(events.filter((e) => e.row === 0).length).toBe(n);
  });

  test('padded batch as tensors', async () => {
    const ids = tf.tensor2d(padded, undefined, 'int32');
    const mask = tf.tensor2d(attentionMask, undefined, 'int32');
    const out = await model.generate(ids, {attentionMask: mask, maxNewTokens: 5, temperature: 0, eosTokenId: []});
    tf.dispose([ids, mask]);
    expect(out.map((r, i) => r.slice(0, prompts[i].length))).toEqual(prompts);
    expect(out.every((r, i) => r.length === prompts[i].length + 5)).toBe(true);
  });
});

describe('sampling', () => {
  const prompt = randomIds(5, 8);
  // tiny-a is peaked (the top logit often leads by 7): a high temperature makes draws matter.
  const opts = {maxNewTokens: 40, temperature: 3, topK: 100, topP: 0.99, eosTokenId: [] as number[]};

  test('a seed reproduces a run; different seeds differ; batch row 0 samples what it samples alone', async () => {
    const a = await model.generate([prompt], {...opts, seed: 7});
    const b = await model.generate([prompt], {...opts, seed: 7});
    const c = await model.generate([prompt], {...opts, seed: 8});
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    const batch = await model.generate([prompt, prompt], {...opts, seed: 7});
    expect(batch[0]).toEqual(a[0]);
    expect(batch[1]).toEqual((await model.generate([prompt], {...opts, seed: 8}))[0]);
  });

  test('repetition penalty breaks the greedy loop of the golden prompt', async () => {
    const {prompt: gp} = golden.greedy as {prompt: number[][]};
    const plain = (await model.generate(gp, {maxNewTokens: 12, temperature: 0}))[0].slice(gp[0].length);
    const penal = (await model.generate(gp, {maxNewTokens: 12, temperature: 0, repetitionPenalty: 3}))[0].slice(
      gp[0].length,
    );
    expect(new Set(plain).size).toBe(1);
    expect(new Set(penal).size).toBeGreaterThan(1);
  });

  test('bad options are refused before any work', async () => {
    await expect(model.generate([prompt], {temperature: -1})).rejects.toThrow(/temperature/);
    await expect(model.generate([prompt], {maxNewTokens: 1.5})).rejects.toThrow(/maxNewTokens/);
    await expect(model.generate([prompt], {stopStrings: ['x']})).rejects.toThrow(/tokenizer/);
    await expect(model.generate([prompt], {stopTokenIds: [V]})).rejects.toThrow(/outside the vocabulary/);
  });

  test('a queue depth other than 1 or 2 (GRIFFIN_QUEUE_DEPTH, queuedDecodeConfig.depth) is refused in one line on any backend', async () => {
    const saved = process.env.GRIFFIN_QUEUE_DEPTH;
    try {
      for (const v of ['0', '3', '1.5', 'deep']) {
        process.env.GRIFFIN_QUEUE_DEPTH = v;
        await expect(model.generate([prompt], {maxNewTokens: 1})).rejects.toThrow(
          new RegExp(`^GRIFFIN_QUEUE_DEPTH must be 1 or 2, got "${v.replace('.', '\\.')}"$`),
        );
      }
      delete process.env.GRIFFIN_QUEUE_DEPTH;
      const want = await model.generate([prompt], {maxNewTokens: 2, temperature: 0});
      for (const v of ['1', '2']) {
        process.env.GRIFFIN_QUEUE_DEPTH = v;
        expect(await model.generate([prompt], {maxNewTokens: 2, temperature: 0})).toEqual(want);
      }
      delete process.env.GRIFFIN_QUEUE_DEPTH;
      queuedDecodeConfig.depth = 5;
      await expect(model.generate([prompt], {maxNewTokens: 1})).rejects.toThrow(
        /^queuedDecodeConfig.depth must be 1 or 2, got 5$/,
      );
    } finally {
      queuedDecodeConfig.depth = null;
      if (saved == null) delete process.env.GRIFFIN_QUEUE_DEPTH;
      else process.env.GRIFFIN_QUEUE_DEPTH = saved;
    }
  });
});

describe('stop conditions and text', () => {
  const prompt = randomIds(6, 6);
  const base = {maxNewTokens: 60, temperature: 1.0, seed: 11, eosTokenId: [] as number[], tokenizer: tok};

  test('event texts concatenate to the decoded new tokens', async () => {
    const events: TokenEvent[] = [];
    const [out] = await model.generate([prompt], {...base, tokenizer: tok, onToken: (e) => events.push(e)});
    const text = events.map((e) => e.text).join('');
    expect(text).toBe(tok.decode(out.slice(prompt.length), {skipSpecial: true}));
    expect(text.length).toBeGreaterThan(0);
    expect(events[events.length - 1].finishReason).toBe('length');
  });

  test('a stop string ends the row at the token that completes it; the text stops before it', async () => {
    const [full] = await model.generate([prompt], {...base, tokenizer: tok});
    const gen = full.slice(prompt.length);
    const text = tok.decode(gen, {skipSpecial: true});
    // A 3-character stop taken from the middle of the text; it may first occur earlier.
    const stopStr = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    expect(stopStr.length).toBe(3);
    let k = 1;
    while (!tok.decode(gen.slice(0, k), {skipSpecial: true}).includes(stopStr)) k++;
    const events: TokenEvent[] = [];
    const [out] = await model.generate([prompt], {
      ...base,
      tokenizer: tok,
      stopStrings: [stopStr],
      onToken: (e) => events.push(e),
    });
    expect(out).toEqual(full.slice(0, prompt.length + k));
    expect(events[events.length - 1].finishReason).toBe('stop_string');
    expect(events.map((e) => e.text).join('')).toBe(text.slice(0, text.indexOf(stopStr)));
  });

  test('stop token ids and eos end the row, keeping the token', async () => {
    const [full] = await model.generate([prompt], base);
    const stopId = full[prompt.length + 5];
    const k = full.indexOf(stopId, prompt.length);
    const [a] = await model.generate([prompt], {...base, stopTokenIds: [stopId]});
    expect(a).toEqual(full.slice(0, k + 1));
    const events: TokenEvent[] = [];
    const [b] = await model.generate([prompt], {...base, eosTokenId: stopId, onToken: (e) => events.push(e)});
    expect(b).toEqual(a);
    expect(events[events.length - 1].finishReason).toBe('eos');
  });

  test("default eos: the config's, plus <end_of_turn> with a tokenizer", async () => {
    const {prompt: gp} = golden.greedy as {prompt: number[][]};
    const next = (await model.generate(gp, {maxNewTokens: 1, temperature: 0}))[0][gp[0].length];
    const run = async (opts: object) => {
      const events: TokenEvent[] = [];
      const [out] = await model.generate(gp, {
        maxNewTokens: 5,
        temperature: 0,
        onToken: (e) => events.push(e),
        ...opts,
      });
      return {n: out.length - gp[0].length, reason: events[events.length - 1].finishReason};
    };
    expect(await run({tokenizer: tok})).toEqual({n: 5, reason: 'length'});
    // A tokenizer whose <end_of_turn> is the greedy token: the row ends on it.
    const turnTok = Object.create(tok, {endOfTurnId: {value: next}}) as GemmaTokenizer;
    expect(await run({tokenizer: turnTok})).toEqual({n: 1, reason: 'eos'});
    expect(await run({tokenizer: turnTok, eosTokenId: []})).toEqual({n: 5, reason: 'length'});
    const saved = model.config.eos_token_id;
    model.config.eos_token_id = [7, next];
    try {
      expect(await run({})).toEqual({n: 1, reason: 'eos'});
    } finally {
      model.config.eos_token_id = saved;
    }
  });
});

describe('streaming, abort, memory', () => {
  const prompt = randomIds(7, 12);

  test('stream yields the events generate reports; breaking out frees everything', async () => {
    const events: TokenEvent[] = [];
    const [out] = await model.generate([prompt], {
      maxNewTokens: 15,
      temperature: 0,
      eosTokenId: [],
      onToken: (e) => events.push(e),
    });
    const before = tf.memory().numTensors;
    const streamed: TokenEvent[] = [];
    for await (const e of model.stream([prompt], {maxNewTokens: 15, temperature: 0, eosTokenId: []})) streamed.push(e);
    expect(streamed).toEqual(events);
    expect(out.slice(prompt.length)).toEqual(events.map((e) => e.tokenId));
    let n = 0;
    for await (const _ of model.stream([prompt], {maxNewTokens: 15, temperature: 0, eosTokenId: []}))
      if (++n === 4) break;
    expect(tf.memory().numTensors).toBe(before);
  });

  test('an AbortSignal stops generation; what was generated is returned', async () => {
    const ac = new AbortController();
    let n = 0;
    const [out] = await model.generate([prompt], {
      maxNewTokens: 100,
      temperature: 0,
      eosTokenId: [],
      signal: ac.signal,
      onToken: () => {
        if (++n === 5) ac.abort();
      },
    });
    expect(out.length).toBe(prompt.length + 5);
    const pre = new AbortController();
    pre.abort();
    expect(await model.generate([prompt], {signal: pre.signal})).toEqual([prompt]);
  });

  test('numTensors flat over a 500-step generation and back to the start after it', async () => {
    const start = tf.memory().numTensors;
    const seen: number[] = [];
    const [out] = await model.generate([prompt], {
      maxNewTokens: 500,
      temperature: 1,
      seed: 3,
      eosTokenId: [],
      onToken: () => seen.push(tf.memory().numTensors),
    });
    expect(out.length).toBe(prompt.length + 500);
    expect(seen[499]).toBe(seen[10]);
    expect(Math.max(...seen.slice(10))).toBe(seen[10]);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('continuing a state (chat turns)', () => {
  test('turn 2 prefilled onto the kept state generates what the whole history gives from scratch', async () => {
    const p1 = randomIds(8, 30),
      p2 = randomIds(9, 20);
    const state = GenerationState.empty(model, 1);
    const [t1] = await model.generate([p1], {state, maxNewTokens: 12, temperature: 0, eosTokenId: []});
    expect(state.positions).toEqual([42]); // prompt + every generated token, the last one included
    const [t2] = await model.generate([p2], {state, maxNewTokens: 12, temperature: 0, eosTokenId: []});
    expect(state.positions).toEqual([74]);
    const [scratch] = await model.generate([[...t1, ...p2]], {maxNewTokens: 12, temperature: 0, eosTokenId: []});
    expect([...t1, ...t2]).toEqual(scratch);
    // Generating with no new prompt continues straight from the state.
    const [t3] = await model.generate([[]], {state, maxNewTokens: 3, temperature: 0, eosTokenId: []});
    const [scratch3] = await model.generate([scratch], {maxNewTokens: 3, temperature: 0, eosTokenId: []});
    expect(t3).toEqual(scratch3.slice(scratch.length));
    state.dispose();
  });

  test('a batch state keeps each row at its own final token', async () => {
    const prompts = [randomIds(10, 6), randomIds(11, 6)];
    const state = GenerationState.empty(model, 2);
    const [a] = await model.generate([prompts[0]], {maxNewTokens: 8, temperature: 0, eosTokenId: []});
    const stop = a[prompts[0].length + 2];
    const out = await model.generate(prompts, {
      state,
      maxNewTokens: 8,
      temperature: 0,
      eosTokenId: [],
      stopTokenIds: [stop],
    });
    expect(state.positions).toEqual(out.map((r) => r.length));
    const next = await model.generate([[5], [5]], {state, maxNewTokens: 2, temperature: 0, eosTokenId: []});
    for (let r = 0; r < 2; r++) {
      const [ref] = await model.generate([[...out[r], 5]], {maxNewTokens: 2, temperature: 0, eosTokenId: []});
      expect(next[r]).toEqual(ref.slice(out[r].length));
    }
    state.dispose();
  });
});
