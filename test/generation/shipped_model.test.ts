/**
 * The shipped small model (assets/griffin-small: float16 tfjs weights + its tokenizer) works out
 * of the box: it loads, its held-out loss is what training reported (far below a unigram model's),
 * `griffin generate` without --model prints exactly the library's greedy continuation, and what
 * it prints is made of English words.
 */
import {spawnSync} from 'child_process';
import * as path from 'path';
import {useBackend} from '../../src/backend';
import {defaultModelDir} from '../../src/cli/generate';
import {brownSplit, loadBrownText} from '../../src/data/corpus';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {heldOutRows, meanLoss, SMALL_CONFIG} from '../../src/pretrain/small';
import {GemmaTokenizer} from '../../src/tokenizer';

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');

let model: RecurrentGemmaForCausalLM;
let tok: GemmaTokenizer;

beforeAll(async () => {
  await useBackend('wasm');
  model = await RecurrentGemmaForCausalLM.fromPretrained(defaultModelDir());
  tok = await GemmaTokenizer.load(path.join(defaultModelDir(), 'tokenizer.model'));
}, 120000);
afterAll(() => model?.dispose());

test('is the documented config, with the tokenizer it was trained with', () => {
  expect(model.config.toJSON()).toMatchObject(SMALL_CONFIG as Record<string, unknown>);
  expect(tok.vocabSize).toBe(SMALL_CONFIG.vocab_size);
});

test('held-out loss on Brown documents it never saw: 4.36 when trained, far below unigram (~6)', async () => {
  // The first 16 windows of 256 tokens of the held-out split, tokenized as `small.js prepare` does.
  const ids: number[] = [];
  for (const d of brownSplit().eval) ids.push(...tok.encode(d, {addBos: true}), 1);
  const rows = heldOutRows(ids, 16, 256);
  const loss = await meanLoss(model, rows, 8);
  expect(loss).toBeGreaterThan(3.5);
  expect(loss).toBeLessThan(4.8);
}, 300000);

test("`griffin generate` with no --model streams the shipped model's greedy text, made of English words", async () => {
  const prompt = 'The old man walked into the';
  const r = spawnSync(
    TSX,
    [
      path.join(ROOT, 'src/cli.ts'),
      'generate',
      '--prompt',
      prompt,
      '--temperature',
      '0',
      '--max-new-tokens',
      '40',
      '--backend',
      'wasm',
    ],
    {cwd: ROOT, encoding: 'utf8', timeout: 180_000},
  );
  expect(r.status).toBe(0);
  expect(r.stderr).toMatch(/decode: 40 tokens/);
  const ids = tok.encode(prompt);
  const [out] = await model.generate([ids], {maxNewTokens: 40, temperature: 0});
  expect(r.stdout).toBe(`${tok.decode(out.slice(ids.length), {skipSpecial: true})}\n`);
  // English-like: nearly every word it prints is a word of the corpus.
  const vocab = new Set(
    loadBrownText()
      .join(' ')
      .toLowerCase()
      .match(/[a-z]+/g),
  );
  const words = r.stdout.toLowerCase().match(/[a-z]+/g) ?? [];
  expect(words.length).toBeGreaterThan(15);
  const known = words.filter((w) => vocab.has(w)).length / words.length;
  expect(known).toBeGreaterThan(0.85);
}, 300000);
