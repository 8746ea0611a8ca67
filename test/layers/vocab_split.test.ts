/**
 * The vocabulary matrix in row pieces (layers/vocab_split.ts), forced on cpu with a tiny piece
 * size: logits, hidden states and loss identical to the unsplit model, gradients equal up to the
 * order of one sum; HF and tfjs checkpoints still hold `model.embed_tokens.weight` as one tensor,
 * loadable either way.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {checkpointTensors} from '../../converters/checkpoint_tensors';
import {listCheckpoint, readTensor} from '../../converters/safetensors';
import {maxPieceBytes, pieceRows, vocabSplit} from '../../layers/vocab_split';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, relError} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const EMBED = 'model.embed_tokens.weight';
const golden = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8'));
// tiny-a: V = 512, d = 64, so 100 rows = 25600 bytes: 6 pieces of 86 / 85 rows, ids on every
// boundary side.
const PIECE_BYTES = 100 * 64 * 4;

/** Builds (or loads) with the piece limit forced, restoring the default afterwards. */
async function withPieces<T>(bytes: number, fn: () => Promise<T> | T): Promise<T> {
  vocabSplit.maxPieceBytes = bytes;
  try {
    return await fn();
  } finally {
    vocabSplit.maxPieceBytes = 0;
  }
}

let whole: RecurrentGemmaForCausalLM;
let split: RecurrentGemmaForCausalLM;
let tmp: string;

/**
 * The model saved in dir, loaded whole and with pieces of `bytes` (`pieces` of them), gives for the
 * golden ids logits equal to the whole fixture model's, bit for bit.
 */
async function expectLoadsAsWhole(dir: string, bytes: number, pieces: number): Promise<void> {
  const ref = tf.tidy(() => whole.forward({inputIds: golden.input_ids}).logits.dataSync());
  for (const b of [0, bytes]) {
    const m = await withPieces(b, () => RecurrentGemmaForCausalLM.fromPretrained(dir));
    expect(m.embed.matrix.pieces.length).toBe(b ? pieces : 1);
    const logits = tf.tidy(() => m.forward({inputIds: golden.input_ids}).logits.dataSync());
    expect(maxAbsDiff(logits, ref)).toBe(0);
    m.dispose();
  }
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  whole = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  split = await withPieces(PIECE_BYTES, () => RecurrentGemmaForCausalLM.fromPretrained(DIR));
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-split-'));
});
afterAll(() => {
  whole?.dispose();
  split?.dispose();
  fs.rmSync(tmp, {recursive: true, force: true});
});

test('pieceRows: one piece when it fits, else the fewest near-equal pieces', () => {
  expect(pieceRows(512, 64, Infinity)).toEqual([512]);
  expect(pieceRows(512, 64, 512 * 64 * 4)).toEqual([512]);
  expect(pieceRows(512, 64, PIECE_BYTES)).toEqual([86, 86, 85, 85, 85, 85]);
  // RecurrentGemma-2B under Dawn's 2 GiB binding limit: two pieces of 1.3 GB.
  expect(pieceRows(256000, 2560, 2 ** 31)).toEqual([128000, 128000]);
  expect(() => pieceRows(10, 64, 100)).toThrow(/cannot hold one row/);
});

test('the limit: override, then GRIFFIN_MAX_PIECE_BYTES, then none on cpu', async () => {
  expect(maxPieceBytes()).toBe(Infinity);
  process.env.GRIFFIN_MAX_PIECE_BYTES = '4096';
  try {
    expect(maxPieceBytes()).toBe(4096);
    await withPieces(123, () => expect(maxPieceBytes()).toBe(123));
    process.env.GRIFFIN_MAX_PIECE_BYTES = 'lots';
    expect(() => maxPieceBytes()).toThrow(/GRIFFIN_MAX_PIECE_BYTES/);
  } finally {
    delete process.env.GRIFFIN_MAX_PIECE_BYTES;
  }
});

test('the split model holds pieces; the checkpoint view still has one embedding tensor', () => {
  const names = [...split.namedParameters().keys()].filter((n) => n.startsWith(EMBED));
  expect(names).toEqual([0, 1, 2, 3, 4, 5].map((k) => `${EMBED}.piece${k}`));
  expect(split.embed.matrix.pieces.map((p) => p.start)).toEqual([0, 86, 172, 257, 342, 427]);
  expect(() => split.embed.weight).toThrow(/split in 6 pieces/);
  const ct = checkpointTensors(split);
  expect([...ct.keys()]).toEqual([...checkpointTensors(whole).keys()]);
  expect(ct.get(EMBED)!.shape).toEqual([512, 64]);
  expect(ct.get(EMBED)!.tfjsName).toBe(whole.embed.weight.originalName);
});

test('logits, every hidden state and the loss are identical to the unsplit model', () => {
  const run = (m: RecurrentGemmaForCausalLM) =>
    tf.tidy(() => {
      const o = m.forward({inputIds: golden.input_ids, labels: golden.labels, outputHiddenStates: true});
      return [o.logits, o.loss!, ...o.hiddenStates!].map((t) => t.dataSync());
    });
  const [a, b] = [run(whole), run(split)];
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => expect({i, diff: maxAbsDiff(b[i], v)}).toEqual({i, diff: 0}));
});

test("gradients equal the unsplit model's to float rounding (embedding pieces concatenated)", () => {
  const grads = (m: RecurrentGemmaForCausalLM) => {
    const ct = checkpointTensors(m);
    const vars = [...ct.values()].flatMap((t) => t.parts.map((p) => p.read() as tf.Variable));
    const {value, grads: g} = tf.variableGrads(
      () => m.forward({inputIds: golden.input_ids, labels: golden.labels}).loss!,
      vars,
    );
    const out = new Map<string, Float32Array>();
    for (const [name, t] of ct) {
      const parts = t.parts.map((p) => g[(p.read() as tf.Variable).name].dataSync() as Float32Array);
      const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        all.set(p, off);
        off += p.length;
      }
      out.set(name, all);
    }
    tf.dispose([value, ...Object.values(g)]);
    return out;
  };
  const [a, b] = [grads(whole), grads(split)];
  expect([...b.keys()]).toEqual([...a.keys()]);
  let worst = 0;
  for (const [name, g] of a) {
    // The head's gradient into the hidden state sums over the vocabulary piece by piece: the
    // order of that one sum differs, and everything upstream of it inherits the rounding.
    const err = relError(b.get(name)!, g);
    worst = Math.max(worst, err);
    expect({name, ok: err < 1e-6}).toEqual({name, ok: true});
  }
  console.log(`split vs unsplit: worst gradient relative difference ${worst.toExponential(2)}`);
});

test('an out-of-range id is still rejected', () => {
  expect(() => split.forward({inputIds: [[2, 512]]})).toThrow(/outside the vocabulary/);
});

test('hf save of the split model writes one embedding tensor; it loads split or whole, identically', async () => {
  const dir = path.join(tmp, 'hf');
  await split.save(dir, {format: 'hf'});
  const metas = listCheckpoint(dir);
  expect([...metas.keys()].sort()).toEqual([...listCheckpoint(DIR).keys()].sort());
  expect(metas.get(EMBED)!.shape).toEqual([512, 64]);
  expect(maxAbsDiff(readTensor(metas.get(EMBED)!), readTensor(listCheckpoint(DIR).get(EMBED)!))).toBe(0);
  await expectLoadsAsWhole(dir, PIECE_BYTES * 2, 3);
});

test('tfjs format: the split model saves one embedding weight; it loads split or whole, identically', async () => {
  const dir = path.join(tmp, 'tfjs');
  await split.save(dir, {format: 'tfjs', shardBytes: 50000});
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const names: string[] = json.weightsManifest[0].weights.map((w: {name: string}) => w.name);
  expect(names.filter((n) => n.includes('embed_tokens'))).toEqual([whole.embed.weight.originalName]);
  await expectLoadsAsWhole(dir, PIECE_BYTES, 6);
});

test('an untied LM head splits the same way, with identical logits', async () => {
  const cfg = {...JSON.parse(fs.readFileSync(path.join(DIR, 'config.json'), 'utf8')), tie_word_embeddings: false};
  const a = new RecurrentGemmaForCausalLM(cfg);
  const b = await withPieces(PIECE_BYTES, () => new RecurrentGemmaForCausalLM(cfg, {init: 'zeros'}));
  expect(b.lmHead!.matrix.pieces.length).toBe(6);
  const ta = checkpointTensors(a),
    tb = checkpointTensors(b);
  expect([...tb.keys()]).toEqual([...ta.keys()]);
  const {readTensorData, writeTensorData} = await import('../../converters/checkpoint_tensors');
  for (const [name, t] of ta) writeTensorData(tb.get(name)!, readTensorData(t));
  const ids = [[2, 85, 86, 171, 172, 511, 0, 342]];
  const la = tf.tidy(() => a.forward({inputIds: ids}).logits.dataSync());
  const lb = tf.tidy(() => b.forward({inputIds: ids}).logits.dataSync());
  expect(maxAbsDiff(lb, la)).toBe(0);
  a.dispose();
  b.dispose();
});

test('disposing a split model frees every piece', async () => {
  const before = tf.memory().numTensors;
  const m = await withPieces(PIECE_BYTES, () => RecurrentGemmaForCausalLM.fromPretrained(DIR));
  m.dispose();
  expect(tf.memory().numTensors).toBe(before);
});
