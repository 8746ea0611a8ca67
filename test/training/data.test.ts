/**
 * JSONL data: the three example shapes and their labels, malformed lines named by file:line
 * before anything is returned, padded and packed batches (and that packing changes no loss).
 */
import * as path from 'path';
import {IGNORE_INDEX} from '../../ops/loss';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {encodeChatForTraining, GemmaTokenizer} from '../../src/tokenizer';
import {buildBatch, countTargets, DataError, loadJsonl, parseJsonl, planBatches} from '../../src/training/data';
import {loadTiny, loadTokenizer, tmpDir, useCpu, writeJsonl} from './helpers';

let tok: GemmaTokenizer;
let dir: string;
beforeAll(async () => {
  await useCpu();
  tok = await loadTokenizer();
  dir = tmpDir('data');
});

test('text: every token is a target, BOS first and EOS last', () => {
  const file = writeJsonl(path.join(dir, 'text.jsonl'), [{text: 'Hello world'}]);
  const d = loadJsonl(file, tok, {seqLen: 64});
  const [e] = d.examples;
  expect(e.ids).toEqual([tok.bosId, ...tok.encode('Hello world', {addBos: false}), tok.eosId]);
  expect(e.labels).toEqual(e.ids);
  expect(e.where).toBe(`${file}:1`);
  expect(d.targets).toBe(e.ids.length - 1);
});

test('prompt/completion: the prompt is not trained, the completion and EOS are', () => {
  const file = writeJsonl(path.join(dir, 'pc.jsonl'), [{prompt: 'Q: two plus two? A:', completion: ' four'}]);
  const [e] = loadJsonl(file, tok, {seqLen: 64}).examples;
  const p = tok.encode('Q: two plus two? A:', {addBos: true}),
    c = tok.encode(' four', {addBos: false});
  expect(e.ids).toEqual([...p, ...c, tok.eosId]);
  expect(e.labels).toEqual([...p.map(() => IGNORE_INDEX), ...c, tok.eosId]);
});

test('messages: Gemma chat template, only model turns (and their <end_of_turn>) trained', () => {
  const messages = [
    {role: 'user', content: 'Hi there'},
    {role: 'model', content: 'Hello!'},
    {role: 'user', content: 'Bye'},
    {role: 'model', content: 'Goodbye.'},
  ] as const;
  const file = writeJsonl(path.join(dir, 'chat.jsonl'), [{messages}]);
  const [e] = loadJsonl(file, tok, {seqLen: 128}).examples;
  const ref = encodeChatForTraining(tok, [...messages]);
  expect(e.ids).toEqual(ref.ids);
  expect(e.labels).toEqual(ref.ids.map((id, i) => (ref.trainMask[i] ? id : IGNORE_INDEX)));
  const trained = e.ids.filter((_, i) => e.labels[i] !== IGNORE_INDEX);
  expect(tok.decode(trained)).toBe('Hello!<end_of_turn>Goodbye.<end_of_turn>');
});

test('blank lines are skipped; long text is split into rows; long chats are truncated', () => {
  const long = 'the cat sat on the mat and looked at the hat. '.repeat(8);
  const file = writeJsonl(path.join(dir, 'mixed.jsonl'), [
    {text: long},
    '',
    '   ',
    {
      messages: [
        {role: 'user', content: long},
        {role: 'model', content: 'ok'},
      ],
    },
    {prompt: 'x', completion: 'y'},
  ]);
  const d = loadJsonl(file, tok, {seqLen: 40});
  const full = [tok.bosId, ...tok.encode(long, {addBos: false}), tok.eosId];
  const rows = d.examples.filter((e) => e.where === `${file}:1`);
  expect(rows.flatMap((r) => r.ids)).toEqual(full);
  expect(rows.every((r) => r.ids.length <= 40)).toBe(true);
  // The chat's model turn lies past 40 tokens: truncated to nothing trainable, so dropped.
  expect(d.truncated).toBe(1);
  expect(d.dropped).toBe(1);
  expect(d.examples.some((e) => e.where === `${file}:4`)).toBe(false);
  expect(d.examples.some((e) => e.where === `${file}:5`)).toBe(true);
});

describe('a malformed line is an error naming file:line, and nothing is returned', () => {
  const good = JSON.stringify({text: 'fine'});
  const cases: [string, string, RegExp][] = [
    ['bad JSON', '{"text": "unterminated', /not valid JSON/],
    ['not an object', '[1, 2]', /expected a JSON object/],
    ['no known shape', '{"body": "x"}', /expected \{"text"/],
    ['two shapes', '{"text": "a", "messages": []}', /mixes text and messages/],
    ['text not a string', '{"text": 5}', /"text" must be a string/],
    ['completion missing', '{"prompt": "a"}', /"completion" must be a string/],
    ['bad role', '{"messages": [{"role": "assistant", "content": "x"}]}', /role must be "user" or "model"/],
    ['no model turn', '{"messages": [{"role": "user", "content": "x"}]}', /no "model" message/],
    [
      'roles out of order',
      '{"messages": [{"role": "model", "content": "x"}, {"role": "user", "content": "y"}]}',
      /roles must alternate/,
    ],
  ];
  test.each(cases)('%s', (_, line, why) => {
    const file = writeJsonl(path.join(dir, 'bad.jsonl'), [good, good, line, good]);
    let err: unknown;
    try {
      loadJsonl(file, tok, {seqLen: 64});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: `));
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).not.toContain('\n');
  });

  test('the last line is checked before the first is used; an empty or missing file fails too', () => {
    const file = writeJsonl(path.join(dir, 'late.jsonl'), [...Array(50).fill(good), '{"text": ']);
    expect(() => parseJsonl(file)).toThrow(`${file}:51: not valid JSON`);
    expect(() => parseJsonl(writeJsonl(path.join(dir, 'empty.jsonl'), ['']))).toThrow(/no examples/);
    expect(() => parseJsonl(path.join(dir, 'nope.jsonl'))).toThrow(/no such file/);
  });
});

describe('batches', () => {
  const ex = (n: number, first: number) => ({
    ids: Array.from({length: n}, (_, i) => first + i),
    labels: Array.from({length: n}, (_, i) => (i < 2 ? IGNORE_INDEX : first + i)),
    where: 'x',
  });
  const examples = [ex(5, 10), ex(3, 20), ex(4, 30), ex(6, 40)];

  test('padding: one example a row, right-padded, label -100 and mask 0 on padding', () => {
    const plan = planBatches(
      examples.map((e) => e.ids.length),
      [0, 1, 2, 3],
      {batchSize: 2, seqLen: 8, pack: false},
    );
    expect(plan).toEqual([
      [[0], [1]],
      [[2], [3]],
    ]);
    const b = buildBatch(examples, plan[0], 0, false);
    expect(b.inputIds).toEqual([
      [10, 11, 12, 13, 14],
      [20, 21, 22, 0, 0],
    ]);
    expect(b.labels[1]).toEqual([IGNORE_INDEX, IGNORE_INDEX, 22, IGNORE_INDEX, IGNORE_INDEX]);
    expect(b.attentionMask).toEqual([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ]);
    expect(b.positionIds).toBeUndefined();
    expect(b.targets).toBe(3 + 1);
  });

  test('packing: examples share rows up to seqLen, positions restart at 0, each start is not a target', () => {
    const plan = planBatches(
      examples.map((e) => e.ids.length),
      [0, 1, 2, 3],
      {batchSize: 4, seqLen: 8, pack: true},
    );
    expect(plan).toEqual([[[0, 1], [2], [3]]]);
    const b = buildBatch(examples, plan[0], 0, true);
    expect(b.inputIds[0]).toEqual([10, 11, 12, 13, 14, 20, 21, 22]);
    expect(b.positionIds![0]).toEqual([0, 1, 2, 3, 4, 0, 1, 2]);
    expect(b.labels[0]).toEqual([-100, -100, 12, 13, 14, -100, -100, 22]);
    expect(b.positionIds![1]).toEqual([0, 1, 2, 3, 0, 0, 0, 0]);
    expect(b.attentionMask![1]).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    expect(b.targets).toBe(countTargets(b.labels));
    expect(b.targets).toBe(4 + 2 + 4);
  });

  test('a packed batch gives every example the loss it has alone (summed over targets)', async () => {
    const model: RecurrentGemmaForCausalLM = await loadTiny();
    const text = loadJsonl(
      writeJsonl(path.join(dir, 'pk.jsonl'), [
        {text: 'Alice was beginning to get very tired'},
        {prompt: 'of sitting by', completion: ' her sister on the bank'},
        {text: 'and of having nothing to do'},
      ]),
      tok,
      {seqLen: 64},
    );
    const n = text.examples.length,
      lengths = text.examples.map((e) => e.ids.length),
      order = [...Array(n).keys()];
    const sumLoss = (pack: boolean, batchSize: number) => {
      let s = 0;
      for (const rows of planBatches(lengths, order, {batchSize, seqLen: 64, pack})) {
        const b = buildBatch(text.examples, rows, 0, pack);
        const {loss, logits} = model.forward({...b, labels: b.labels});
        s += loss!.dataSync()[0] * b.targets;
        tf.dispose([loss!, logits]);
      }
      return s;
    };
    const alone = sumLoss(false, 1),
      padded = sumLoss(false, 3),
      packed = sumLoss(true, 1);
    console.log(`summed loss: alone ${alone}, padded ${padded}, packed ${packed}`);
    expect(Math.abs(padded - alone) / alone).toBeLessThan(1e-5);
    expect(Math.abs(packed - alone) / alone).toBeLessThan(1e-5);
    model.dispose();
  });
});
