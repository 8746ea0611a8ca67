/**
 * What a model directory holds, and the one policy every save follows: a directory holds exactly
 * one model. A save replaces the model files of every format (HF, tfjs, a LoRA adapter) that were
 * there; the tokenizer's files too when the save writes a tokenizer; anything else is kept.
 *   const keep = keepBeside({tokenizer: false});   // writeDirAtomic's option: what of the old directory stays
 *   if (sameDir(out, dir)) throw new Error('--out must differ from --model');
 */
import * as fs from 'fs';
import * as path from 'path';
import {realPath} from './atomic_dir';
import {CheckpointError} from './safetensors';

/** Files of a model in any of the formats this package reads: weights, their index, config, adapter. */
export function isModelFile(name: string): boolean {
  return (
    [
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'model.safetensors.index.json',
      'pytorch_model.bin',
      'pytorch_model.bin.index.json',
      'model.json',
      'adapter_config.json',
      'adapter_model.safetensors',
      'adapter_model.bin',
    ].includes(name) ||
    /^model-\d+-of-\d+\.safetensors$/.test(name) ||
    /^pytorch_model-\d+-of-\d+\.bin$/.test(name) ||
    /^group\d+-shard\d+of\d+\.bin$/.test(name)
  );
}

/** The tokenizer files a model directory may hold (GemmaTokenizer.load reads the first three). */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer.model',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
];

/** The keep option of an atomic save into a model directory (converters/atomic_dir.ts). */
export function keepBeside(opts: {tokenizer: boolean}): (name: string) => boolean {
  return (name) => !isModelFile(name) && !(opts.tokenizer && TOKENIZER_FILES.includes(name));
}

/** Copies the tokenizer files of dir into out; returns their names (none when dir has no tokenizer). */
export function copyTokenizerFiles(dir: string, out: string): string[] {
  const names = TOKENIZER_FILES.filter((f) => fs.statSync(path.join(dir, f), {throwIfNoEntry: false})?.isFile());
  for (const f of names) fs.copyFileSync(path.join(dir, f), path.join(out, f));
  return names;
}

/** Whether two paths name the same directory once symlinks are resolved (either may not exist yet). */
export function sameDir(a: string, b: string): boolean {
  return realPath(a) === realPath(b);
}

/**
 * `griffin convert`'s refusal to write into something that is not a model directory: an existing
 * path that is not a directory, or a directory holding files but no model (a new, empty or model
 * directory is fine: its model is replaced, other files stay).
 */
export function checkOutputDir(dir: string): void {
  const st = fs.statSync(dir, {throwIfNoEntry: false});
  if (st == null) return;
  if (!st.isDirectory()) throw new CheckpointError(`${dir}: exists and is not a directory`);
  const files = fs.readdirSync(dir);
  if (files.length > 0 && !files.some(isModelFile))
    throw new CheckpointError(`${dir}: exists and holds files but no checkpoint; give a new or empty directory`);
}
