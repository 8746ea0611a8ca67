/** Shared setup of the training tests: the cpu backend, tiny-a as a model directory with a tokenizer, temp dirs. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';

export const FIXTURES = path.join(__dirname, '../fixtures');
export const TINY_A = path.join(FIXTURES, 'tiny-a');
export const TOKENIZER = path.join(FIXTURES, 'tokenizer/tiny.model');
export const TEXT_TRAIN = path.join(__dirname, 'fixtures/alice_train.jsonl');
export const TEXT_EVAL = path.join(__dirname, 'fixtures/alice_eval.jsonl');

export async function useCpu(): Promise<void> {
  await tf.setBackend('cpu');
}

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `griffin-${tag}-`));
}

/** tiny-a's checkpoint plus tokenizer.model: a model directory as `griffin finetune --model` wants it. */
export function tinyModelDir(): string {
  const dir = tmpDir('model');
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(dir, f));
  fs.copyFileSync(TOKENIZER, path.join(dir, 'tokenizer.model'));
  return dir;
}

export const loadTiny = () => RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
export const loadTokenizer = () => GemmaTokenizer.load(TOKENIZER);

export function writeJsonl(file: string, rows: unknown[]): string {
  fs.writeFileSync(file, `${rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`);
  return file;
}

/** Every parameter's values, by name, copied to the host. */
export function snapshot(model: RecurrentGemmaForCausalLM): Map<string, Float32Array> {
  return new Map([...model.namedParameters()].map(([n, v]) => [n, (v.read().dataSync() as Float32Array).slice()]));
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
