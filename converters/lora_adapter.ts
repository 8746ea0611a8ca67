/**
 * LoRA adapters on disk, in PEFT's layout: adapter_model.safetensors with
 * `base_model.model.<module>.lora_A.weight` (loading also accepts the names without the prefix)
 * and adapter_config.json, whose base_model_name_or_path names the base model.
 *   await saveLoraAdapter(model, 'adapter/');   loadLoraAdapter(other, 'adapter/');
 *   if (isAdapterDir('adapter/')) console.log(adapterBase('adapter/'));  // {path} or {hubId}
 *
 * PEFT settings this package does not implement (DoRA, rsLoRA, per-module ranks, bias training,
 * modules_to_save, layer subsets, target regexes) are refused by name rather than loaded wrongly.
 */

import * as tf from '@tensorflow/tfjs';
import * as fs from 'fs';
import * as path from 'path';
import {
  AdapterConfigJson,
  adapterConfig,
  addLora,
  LoraAdapter,
  LoraConfig,
  LoraHost,
  loraParameters,
  PEFT_PREFIX,
  removeLora,
} from '../layers/lora';
import {recoverDir, writeDirAtomic} from './atomic_dir';
import {keepBeside} from './model_dir';
import {readHeader, readTensor, writeSafetensors} from './safetensors';

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * Writes adapter_model.safetensors and adapter_config.json into dir, all or nothing
 * (converters/atomic_dir.ts), replacing the model or adapter that was there (converters/model_dir.ts).
 */
export async function saveLoraAdapter(
  model: LoraHost,
  dir: string,
  opts: {baseModel?: string | null} = {},
): Promise<void> {
  // Values are read before the swap begins (webgpu in Node has no synchronous read).
  const write = await adapterWriter(model, opts);
  await writeDirAtomic(dir, write, {keep: keepBeside({tokenizer: false})});
}

/**
 * Reads the adapter's values (asynchronously: webgpu in Node has no synchronous read) and returns
 * a function writing saveLoraAdapter's files straight into a directory (an atomic save's temporary one).
 */
export async function adapterWriter(
  model: LoraHost,
  opts: {baseModel?: string | null} = {},
): Promise<(dir: string) => void> {
  const config = adapterConfig(model, opts.baseModel ?? null);
  const tensors = await Promise.all(
    [...loraParameters(model)].map(async ([name, v]) => ({
      name,
      shape: v.shape as number[],
      data: (await v.data()) as Float32Array,
    })),
  );
  return (dir) => {
    fs.mkdirSync(dir, {recursive: true});
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors, {format: 'pt'});
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG), `${JSON.stringify(config, null, 2)}\n`);
  };
}

function readAdapterJson(dir: string): Partial<AdapterConfigJson> {
  const file = path.join(dir, ADAPTER_CONFIG);
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (j == null || typeof j !== 'object' || Array.isArray(j)) throw new Error('not an object');
    return j;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !fs.existsSync(dir)) throw new Error(`adapter ${dir}: no such directory`);
    throw new Error(
      `${file}: ${code === 'ENOENT' ? 'not found (an adapter directory holds adapter_config.json)' : `not valid JSON (${(e as Error).message})`}`,
    );
  }
}

const empty = (v: unknown) =>
  v == null ||
  v === false ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && Object.keys(v).length === 0);

/** Reads an adapter's config, or throws naming the file. */
export function readAdapterConfig(dir: string): LoraConfig {
  const file = path.join(dir, ADAPTER_CONFIG);
  const j = readAdapterJson(dir);
  if (j.peft_type != null && j.peft_type !== 'LORA') throw new Error(`${file}: peft_type ${j.peft_type} is not LORA`);
  let targets = j.target_modules as unknown;
  // PEFT also writes a single module name as a string; a string that is not a plain name is a regex.
  if (typeof targets === 'string' && /^\w+$/.test(targets)) targets = [targets];
  if (typeof targets === 'string')
    throw new Error(`${file}: target_modules ${JSON.stringify(targets)} is a regular expression (not supported)`);
  if (typeof j.r !== 'number' || !Array.isArray(targets)) throw new Error(`${file}: needs "r" and "target_modules"`);
  for (const key of [
    'use_dora',
    'use_rslora',
    'rank_pattern',
    'alpha_pattern',
    'modules_to_save',
    'layers_to_transform',
  ]) {
    if (!empty(j[key])) throw new Error(`${file}: ${key} ${JSON.stringify(j[key])} is not supported`);
  }
  if (j.bias != null && j.bias !== 'none') throw new Error(`${file}: bias ${JSON.stringify(j.bias)} is not supported`);
  if ((j.fan_in_fan_out as unknown) === true) throw new Error(`${file}: fan_in_fan_out is not supported`);
  return {rank: j.r, alpha: j.lora_alpha ?? j.r, dropout: j.lora_dropout ?? 0, targets: targets as string[]};
}

/**
 * Whether dir is an adapter alone: adapter_config.json without a model's config.json or
 * model.json (a merged fine-tune holds both, and is a checkpoint).
 */
export function isAdapterDir(dir: string): boolean {
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  return has(ADAPTER_CONFIG) && !has('config.json') && !has('model.json');
}

/** A Hugging Face Hub model id: `name` or `owner/name`. */
export const HUB_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

/**
 * The base model an adapter names in base_model_name_or_path: a local path (a relative one is
 * taken from the adapter's folder, as the adapter travels with what it was trained on) or,
 * when no such path exists, a Hub id.
 */
export function adapterBase(dir: string): {path: string} | {hubId: string; revision?: string} {
  const file = path.join(dir, ADAPTER_CONFIG);
  const json = readAdapterJson(dir);
  const base = json.base_model_name_or_path;
  if (typeof base !== 'string' || base === '')
    throw new Error(
      `${file}: base_model_name_or_path is not set; pass the base model (fromPretrained(base, {adapter}) or --model BASE --adapter DIR)`,
    );
  const local = path.resolve(dir, base);
  if (fs.existsSync(local)) return {path: local};
  if (!path.isAbsolute(base) && !base.startsWith('.') && HUB_ID.test(base)) {
    // PEFT records the base's revision when it was not the default branch.
    const revision = (json as {revision?: unknown}).revision;
    return typeof revision === 'string' && revision !== '' ? {hubId: base, revision} : {hubId: base};
  }
  throw new Error(`${file}: base model ${base} not found (looked for ${local})`);
}

/**
 * Attaches the adapter saved in dir to the model (addLora with its config, then its weights).
 * Every tensor is checked against the model before any is used.
 */
export function loadLoraAdapter(model: LoraHost, dir: string): Map<string, LoraAdapter> {
  recoverDir(dir);
  const cfg = readAdapterConfig(dir);
  const file = path.join(dir, ADAPTER_WEIGHTS);
  const {tensors} = readHeader(file);
  const byName = new Map([...tensors].map(([k, m]) => [k.startsWith(PEFT_PREFIX) ? k : PEFT_PREFIX + k, m]));
  const adapters = addLora(model, cfg);
  try {
    const params = loraParameters(model);
    for (const [name, v] of params) {
      const m = byName.get(name);
      if (m == null) throw new Error(`${file}: lacks ${name}`);
      if (m.shape.join() !== v.shape.join())
        throw new Error(`${file}: ${name} has shape [${m.shape}], the model needs [${v.shape}]`);
    }
    const extra = [...byName.keys()].find((k) => !params.has(k));
    if (extra != null) throw new Error(`${file}: unexpected tensor ${extra} (not an adapter of this model and config)`);
    for (const [name, v] of params) {
      const t = tf.tensor(readTensor(byName.get(name)!) as Float32Array, v.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  } catch (e) {
    removeLora(model);
    throw e;
  }
  return adapters;
}

/**
 * What fromPretrained(source, {adapter}) loads: the base checkpoint (a path or a Hub id, with the
 * revision the adapter names for it) and the adapter directory, if any. An adapter directory as
 * the source brings its own base.
 */
export function adapterSource(
  source: string,
  adapter?: string | null,
): {base: string; adapter: string | null; baseRevision?: string} {
  let baseRevision: string | undefined;
  for (const d of [source, adapter]) if (d != null && !/^[a-z][a-z0-9+.-]*:\/\//i.test(d)) recoverDir(d);
  if (adapter == null) {
    if (!fs.existsSync(source) || !isAdapterDir(source)) return {base: source, adapter: null};
    adapter = source;
    const b = adapterBase(source);
    source = 'path' in b ? b.path : b.hubId;
    if ('revision' in b) baseRevision = b.revision;
  }
  readAdapterConfig(adapter); // a bad adapter fails before the base is read
  if (!fs.existsSync(path.join(adapter, ADAPTER_WEIGHTS))) throw new Error(`adapter ${adapter}: no ${ADAPTER_WEIGHTS}`);
  return {base: source, adapter, baseRevision};
}
