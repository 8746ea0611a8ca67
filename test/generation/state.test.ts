/**
 * The decoding state: cached decode against the full-sequence forward at every position (tiny-a,
 * and a random model with a 4-step window that wraps the cache many times), chunked prefill,
 * left-padded batches, save/load/fork, and constant memory.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GenerationState} from '../../src/generation/state';
import type {ForwardInputs} from '../../src/model';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, relError, seededUniform} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const TOL = 1e-4;

let tinyA: RecurrentGemmaForCausalLM;
let tinyW: RecurrentGemmaForCausalLM; // attention_window_size 4
const report: string[] = [];

beforeAll(async () => {
  await tf.setBackend('cpu');
  tinyA = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  tf.randomUniform([1]).dispose();
  tinyW = new RecurrentGemmaForCausalLM({
    vocab_size: 97,
    hidden_size: 32,
    lru_width: 48,
    intermediate_size: 64,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 5,
    attention_window_size: 4,
    conv1d_width: 3,
    block_types: ['attention', 'recurrent', 'attention'],
    tie_word_embeddings: false,
  });
});
afterAll(() => {
  console.log(`worst relative errors: ${report.join('; ')}`);
  tinyA.dispose();
  tinyW.dispose();
});

function randomIds(seed: number, n: number, vocab: number, lo = 3): number[] {
  const r = seededUniform(seed);
  return Array.from({length: n}, () => lo + Math.floor(r() * (vocab - lo)));
}

function fullLogits(model: RecurrentGemmaForCausalLM, ids: number[]): number[][] {
  const {logits} = model.forward({inputIds: [ids]});
  const out = (logits.arraySync() as number[][][])[0];
  logits.dispose();
  return out;
}

/** Row-wise logits of a [b, V] tensor, which is then disposed. */
function rowsOf(t: tf.Tensor): number[][] {
  const a = t.arraySync() as number[][];
  t.dispose();
  return a;
}

/** Prefill `prompt`, then decode the rest of `ids`; returns the logits after each position from prompt-1 on. */
function cachedLogits(
  model: RecurrentGemmaForCausalLM,
  ids: number[],
  promptLen: number,
  chunkSize?: number,
): number[][] {
  const state = model.prefill([ids.slice(0, promptLen)], {chunkSize});
  const out = [rowsOf(tf.clone(state.logits))[0]];
  for (let i = promptLen; i < ids.length; i++) out.push(rowsOf(model.decodeStep(state, [ids[i]]).logits)[0]);
  state.dispose();
  return out;
}

function worstRel(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((r, i) => relError(r, b[i])));
}

describe('cached decode equals the full forward at every position', () => {
  test('tiny-a (window 64): 40-token prompt + 200 decoded tokens', () => {
    const ids = randomIds(1, 240, tinyA.config.vocab_size);
    const full = fullLogits(tinyA, ids);
    const err = worstRel(cachedLogits(tinyA, ids, 40), full.slice(39));
    report.push(`tiny-a 240 tokens ${err.toExponential(2)}`);
    expect(err).toBeLessThan(TOL);
  });

  test('tiny-a: prompts longer than the window, prefilled in chunks shorter than it', () => {
    const ids = randomIds(2, 230, tinyA.config.vocab_size);
    const full = fullLogits(tinyA, ids);
    const err = worstRel(cachedLogits(tinyA, ids, 150, 37), full.slice(149));
    report.push(`tiny-a prompt 150 in chunks of 37 ${err.toExponential(2)}`);
    expect(err).toBeLessThan(TOL);
  });

  test('window 4: the cache wraps ~50 times; prompts of 1, 3 and 9 tokens', () => {
    const ids = randomIds(3, 200, tinyW.config.vocab_size);
    const full = fullLogits(tinyW, ids);
    let worst = 0;
    for (const p of [1, 3, 9]) {
      const err = worstRel(cachedLogits(tinyW, ids, p), full.slice(p - 1));
      worst = Math.max(worst, err);
      expect(err).toBeLessThan(TOL);
    }
    report.push(`window-4 model 200 tokens ${worst.toExponential(2)}`);
  });
});

describe('chunked prefill', () => {
  for (const [name, get] of [
    ['tiny-a', () => tinyA],
    ['window 4', () => tinyW],
  ] as const) {
    test(`${name}: three prefill calls onto one state equal one prefill, state tensor by tensor`, () => {
      const model = get();
      const ids = randomIds(4, 150, model.config.vocab_size);
      const one = model.prefill([ids]);
      const three = model.prefill([ids.slice(0, 50)]);
      expect(model.prefill([ids.slice(50, 110)], {state: three})).toBe(three);
      model.prefill([ids.slice(110)], {state: three});
      expect(three.positions).toEqual([150]);
      expect(one.positions).toEqual([150]);
      const a = one.tensors(),
        b = three.tensors();
      expect(a.length).toBe(b.length);
      let worst = 0;
      a.forEach((t, i) => {
        expect(t.shape).toEqual(b[i].shape);
        worst = Math.max(worst, relError(t.dataSync(), b[i].dataSync()));
      });
      report.push(`${name} chunked prefill state ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(TOL);
      // ...and they decode alike.
      for (const id of [5, 9, 11]) {
        expect(
          relError(rowsOf(model.decodeStep(one, [id]).logits)[0], rowsOf(model.decodeStep(three, [id]).logits)[0]),
        ).toBeLessThan(TOL);
      }
      one.dispose();
      three.dispose();
    });
  }

  test('a state prefilled from GenerationState.empty equals a fresh prefill', () => {
    const ids = randomIds(5, 30, tinyA.config.vocab_size);
    const fresh = tinyA.prefill([ids]);
    const empty = GenerationState.empty(tinyA, 1);
    tinyA.prefill([ids], {state: empty});
    expect(relError(empty.logits.dataSync(), fresh.logits.dataSync())).toBeLessThan(TOL);
    fresh.dispose();
    empty.dispose();
  });
});

describe('left-padded batches', () => {
  for (const [name, get] of [
    ['tiny-a', () => tinyA],
    ['window 4', () => tinyW],
  ] as const) {
    test(`${name}: rows of 5, 30 and 70 tokens decode as they do alone`, () => {
      const model = get();
      const V = model.config.vocab_size;
      const prompts = [5, 30, 70].map((n, i) => randomIds(10 + i, n, V));
      const T = 70;
      const padded = prompts.map((p) => [...Array(T - p.length).fill(0), ...p]);
      const mask = prompts.map((p) => [...Array(T - p.length).fill(0), ...Array(p.length).fill(1)]);
      const conts = prompts.map((_, i) => randomIds(20 + i, 40, V));
      const batch = model.prefill(padded, {attentionMask: mask, chunkSize: 32});
      expect(batch.positions).toEqual([5, 30, 70]);
      const batchLogits: number[][][] = [rowsOf(tf.clone(batch.logits))];
      for (let s = 0; s < 40; s++)
        batchLogits.push(
          rowsOf(
            model.decodeStep(
              batch,
              conts.map((c) => c[s]),
            ).logits,
          ),
        );
      batch.dispose();
      let worst = 0;
      prompts.forEach((p, r) => {
        const alone = cachedLogits(model, [...p, ...conts[r]], p.length);
        const err = worstRel(
          batchLogits.map((l) => l[r]),
          alone,
        );
        worst = Math.max(worst, err);
        expect(err).toBeLessThan(TOL);
      });
      report.push(`${name} padded batch vs alone ${worst.toExponential(2)}`);
    });
  }

  test('padding after a token is refused', () => {
    expect(() => tinyA.prefill([[5, 6, 7]], {attentionMask: [[1, 0, 1]]})).toThrow(/only left padding/);
    expect(() => tinyA.prefill([[5, 6]], {attentionMask: [[0, 0]]})).toThrow(/no tokens/);
  });
});

describe('a state is a value: clone, select, save, load', () => {
  test('save then load continues identically (bit for bit)', async () => {
    const ids = randomIds(30, 80, tinyA.config.vocab_size);
    const state = tinyA.prefill([ids.slice(0, 70), ids.slice(10, 80)]);
    for (let i = 0; i < 5; i++) tinyA.decodeStep(state, [7 + i, 9 + i]).logits.dispose();
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-state-')), 'state.safetensors');
    await state.save(file);
    const loaded = await GenerationState.load(file, tinyA);
    expect(loaded.positions).toEqual(state.positions);
    expect(loaded.byteSize).toBe(state.byteSize);
    for (let i = 0; i < 10; i++) {
      const a = rowsOf(tinyA.decodeStep(state, [20 + i, 40 + i]).logits);
      const b = rowsOf(tinyA.decodeStep(loaded, [20 + i, 40 + i]).logits);
      expect(maxAbsDiff(a.flat(), b.flat())).toBe(0);
    }
    state.dispose();
    loaded.dispose();
    // Another model's shape is refused with a one-line reason.
    await expect(GenerationState.load(file, tinyW)).rejects.toThrow(/another shape/);
    await expect(tinyA.loadState(path.join(DIR, 'model.safetensors'))).rejects.toThrow(/not a generation state/);
  });

  test('fork: advancing a clone leaves the original as it was; select picks rows', () => {
    const V = tinyA.config.vocab_size;
    const ids = randomIds(31, 20, V);
    const tail = randomIds(32, 6, V);
    const reference = cachedLogits(tinyA, [...ids, ...tail], ids.length);
    const state = tinyA.prefill([ids]);
    const fork = state.clone();
    for (const id of randomIds(33, 8, V)) tinyA.decodeStep(fork, [id]).logits.dispose(); // another continuation
    const got = [
      rowsOf(tf.clone(state.logits))[0],
      ...tail.map((id) => rowsOf(tinyA.decodeStep(state, [id]).logits)[0]),
    ];
    expect(maxAbsDiff(got.flat(), reference.flat())).toBe(0);
    expect(fork.positions).toEqual([28]);
    // Several samples from one prompt: select([0, 0, 0]) and the rows stay identical.
    const three = fork.select([0, 0, 0]);
    const l = rowsOf(tinyA.decodeStep(three, [5, 5, 5]).logits);
    expect(maxAbsDiff(l[0], l[2])).toBe(0);
    const both = GenerationState.concat([state, fork]);
    expect(both.positions).toEqual([26, 28]);
    [state, fork, three, both].forEach((s) => s.dispose());
    expect(() => state.clone()).toThrow(/disposed/);
  });
});

test('memory: numTensors and bytes flat across 1000 decode steps', () => {
  const state = tinyA.prefill([randomIds(40, 10, tinyA.config.vocab_size)]);
  const bytes0 = state.byteSize;
  let at10 = {n: 0, b: 0};
  const r = seededUniform(41);
  for (let i = 0; i < 1000; i++) {
    tinyA.decodeStep(state, [3 + Math.floor(r() * 500)]).logits.dispose();
    if (i === 9) at10 = {n: tf.memory().numTensors, b: tf.memory().numBytes};
  }
  expect(tf.memory().numTensors).toBe(at10.n);
  expect(tf.memory().numBytes).toBe(at10.b);
  expect(state.byteSize).toBe(bytes0);
  expect(state.positions).toEqual([1010]);
  report.push(`state of tiny-a: ${bytes0} bytes at 10 and at 1010 tokens`);
  state.dispose();
});

test('packed rows: a document started inside a chunk does not see the previous one through the conv history', () => {
  // Chunk 1 holds document A (6 tokens) and the first 2 tokens of B; chunk 2 continues B.
  const V = tinyA.config.vocab_size;
  const a = randomIds(50, 6, V),
    b = randomIds(51, 8, V);
  const run = (ids: number[], pos: number[], state: ForwardInputs['state']) => {
    const out = tinyA.forward({inputIds: [ids], positionIds: [pos], state, returnState: true});
    return {logits: out.logits, states: out.state!};
  };
  const c1 = run([...a, ...b.slice(0, 2)], [0, 1, 2, 3, 4, 5, 0, 1], null);
  const c2 = run(b.slice(2), [2, 3, 4, 5, 6, 7], c1.states);
  const alone = fullLogits(tinyA, b).slice(2);
  const got = (c2.logits.arraySync() as number[][][])[0];
  const err = worstRel(got, alone);
  report.push(`packed chunk continuation ${err.toExponential(2)}`);
  expect(err).toBeLessThan(TOL);
  tf.dispose([
    c1.logits,
    c2.logits,
    ...c1.states.flatMap((s) => Object.values(s)),
    ...c2.states.flatMap((s) => Object.values(s)),
  ]);
});
