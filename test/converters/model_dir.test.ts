/**
 * Output directories hold exactly one model (converters/model_dir.ts): a save in one format
 * replaces the model of another format, an adapter the model it lands on, fine-tuning and convert
 * the tokenizer too; an output that is the input through a symlink is refused.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {isAdapterDir, saveLoraAdapter} from '../../converters/lora_adapter';
import {sameDir} from '../../converters/model_dir';
import {addLora} from '../../layers/lora';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {finetune} from '../../src/training/finetune';
import {GEMMA_DIR} from '../helpers';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
const FIX = path.join(__dirname, '../fixtures');
const TINY_A = path.join(FIX, 'tiny-a');
const TINY_TOK = path.join(FIX, 'tokenizer/tiny.model');
const DATA = path.join(__dirname, '../training/fixtures/alice_train.jsonl');
const IDS = [[2, 342, 48, 451, 411, 374, 280, 400]];
let tmp: string;
let tiny: RecurrentGemmaForCausalLM;
let other: RecurrentGemmaForCausalLM; // tiny-a with another embedding: a different model of the same shapes

const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = logits.dataSync() as Float32Array;
  logits.dispose();
  return v;
};
const same = (a: Float32Array, b: Float32Array) => a.every((x, i) => x === b[i]);
async function loadsAs(dir: string, m: RecurrentGemmaForCausalLM): Promise<boolean> {
  const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  const r = same(logitsOf(back), logitsOf(m));
  back.dispose();
  return r;
}
function griffin(args: string[]) {
  const r = spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return {code: r.status, stderr: r.stderr};
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-modeldir-'));
  tiny = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  other = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  const emb = other.namedParameters().get('model.embed_tokens.weight')!;
  emb.write(tf.mul(emb.read(), 1.5));
  expect(same(logitsOf(tiny), logitsOf(other))).toBe(false);
});
afterAll(() => {
  tiny.dispose();
  other.dispose();
  fs.rmSync(tmp, {recursive: true, force: true});
});

test('save as hf over a tfjs model (and back): the new model loads, the other format is gone, the rest stays', async () => {
  const dir = path.join(tmp, 'formats');
  await other.save(dir, {format: 'tfjs'});
  fs.writeFileSync(path.join(dir, 'tokenizer.model'), 'kept');
  fs.writeFileSync(path.join(dir, 'NOTES.md'), 'kept');
  await tiny.save(dir, {format: 'hf'});
  expect(fs.readdirSync(dir).sort()).toEqual(['NOTES.md', 'config.json', 'model.safetensors', 'tokenizer.model']);
  expect(await loadsAs(dir, tiny)).toBe(true);
  await other.save(dir, {format: 'tfjs'});
  expect(fs.readdirSync(dir).filter((f) => /safetensors|config\.json/.test(f))).toEqual([]);
  expect(await loadsAs(dir, other)).toBe(true);
  expect(fs.readFileSync(path.join(dir, 'tokenizer.model'), 'utf8')).toBe('kept');
});

test('an adapter saved over a model: the directory is then an adapter alone', async () => {
  const dir = path.join(tmp, 'adapter');
  await tiny.save(dir, {format: 'hf'});
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  addLora(m, {rank: 2});
  await saveLoraAdapter(m, dir, {baseModel: TINY_A});
  m.dispose();
  expect(isAdapterDir(dir)).toBe(true);
  expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
});

test("fine-tuning into a copy of another model: its weights and tokenizer are replaced by the run's", async () => {
  const base = path.join(tmp, 'base');
  fs.mkdirSync(base);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(base, f));
  fs.copyFileSync(TINY_TOK, path.join(base, 'tokenizer.model'));
  // The output directory starts as a copy of another model: tfjs weights and Gemma's 256k tokenizer.json.
  const out = path.join(tmp, 'tuned');
  await other.save(out, {format: 'tfjs'});
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    fs.copyFileSync(path.join(GEMMA_DIR, f), path.join(out, f));
  const r = await finetune({model: base, data: DATA, out, steps: 1, seqLen: 32, batchSize: 2, lr: 1e-3});
  const tuned = logitsOf(r.model);
  r.model.dispose();
  expect(fs.readdirSync(out).sort()).toEqual([
    'checkpoints',
    'config.json',
    'model.safetensors',
    'tokenizer.model',
    'training_summary.json',
  ]);
  const back = await RecurrentGemmaForCausalLM.fromPretrained(out);
  expect(same(logitsOf(back), tuned)).toBe(true);
  back.dispose();
  const tok = await GemmaTokenizer.load(out);
  expect(tok.vocabSize).toBe((await GemmaTokenizer.load(TINY_TOK)).vocabSize);
});

test('--out reaching the input through a symlink is refused (finetune, convert), exit 2, nothing written', () => {
  const base = path.join(tmp, 'base');
  const link = path.join(tmp, 'link-to-base');
  fs.symlinkSync(base, link);
  expect(sameDir(link, base)).toBe(true);
  expect(sameDir(path.join(link, 'new'), path.join(base, 'new'))).toBe(true);
  const before = fs.readdirSync(base).sort();
  const stat = fs.statSync(path.join(base, 'model.safetensors')).mtimeMs;
  for (const args of [
    ['finetune', '--model', base, '--data', DATA, '--out', link, '--steps', '1', '--backend', 'cpu'],
    ['convert', '--from', base, '--out', link, '--format', 'hf'],
  ]) {
    const r = griffin(args);
    expect(r.stderr).toMatch(/^griffin: --out .*link-to-base is the --(model|from) directory \(symlinks resolved\)\n$/);
    expect(r.code).toBe(2);
  }
  expect(fs.readdirSync(base).sort()).toEqual(before);
  expect(fs.statSync(path.join(base, 'model.safetensors')).mtimeMs).toBe(stat);
});

test('griffin convert over a tfjs model of another: the hf model and its tokenizer replace it', async () => {
  const out = path.join(tmp, 'converted');
  await other.save(out, {format: 'tfjs'});
  fs.copyFileSync(path.join(GEMMA_DIR, 'tokenizer.json'), path.join(out, 'tokenizer.json'));
  const r = griffin(['convert', '--from', path.join(tmp, 'base'), '--out', out, '--format', 'hf']);
  expect(r.code).toBe(0);
  expect(fs.readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.model']);
  expect(await loadsAs(out, tiny)).toBe(true);
});
