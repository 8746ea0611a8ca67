/**
 * LoRA adapters on disk, in PEFT's layout: adapter_model.safetensors with
 * `base_model.model.<module>.lora_A.weight` (loading also accepts the names without the prefix)
 * and adapter_config.json.
 *   await saveLoraAdapter(model, 'adapter/');   loadLoraAdapter(other, 'adapter/');
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
import {readHeader, readTensor, writeSafetensors} from './safetensors';

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * Writes adapter_model.safetensors and adapter_config.json into dir (each via a temp file and a
 * rename). Values are read asynchronously: webgpu in Node has no synchronous read.
 */
export async function saveLoraAdapter(
  model: LoraHost,
  dir: string,
  opts: {baseModel?: string | null} = {},
): Promise<void> {
  const config = adapterConfig(model, opts.baseModel ?? null);
  const tensors = await Promise.all(
    [...loraParameters(model)].map(async ([name, v]) => ({
      name,
      shape: v.shape as number[],
      data: (await v.data()) as Float32Array,
    })),
  );
  fs.mkdirSync(dir, {recursive: true});
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors, {format: 'pt'}); // itself via .tmp + rename
  fs.writeFileSync(path.join(dir, `${ADAPTER_CONFIG}.tmp`), `${JSON.stringify(config, null, 2)}\n`);
  fs.renameSync(path.join(dir, `${ADAPTER_CONFIG}.tmp`), path.join(dir, ADAPTER_CONFIG));
}

/** Reads an adapter's config, or throws naming the file. */
export function readAdapterConfig(dir: string): LoraConfig {
  const file = path.join(dir, ADAPTER_CONFIG);
  let j: Partial<AdapterConfigJson>;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(
      `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `not valid JSON (${(e as Error).message})`}`,
    );
  }
  if (j.peft_type != null && j.peft_type !== 'LORA') throw new Error(`${file}: peft_type ${j.peft_type} is not LORA`);
  if (typeof j.r !== 'number' || !Array.isArray(j.target_modules))
    throw new Error(`${file}: needs "r" and "target_modules"`);
  return {rank: j.r, alpha: j.lora_alpha ?? j.r, dropout: j.lora_dropout ?? 0, targets: j.target_modules as string[]};
}

/**
 * Attaches the adapter saved in dir to the model (addLora with its config, then its weights).
 * Every tensor is checked against the model before any is used.
 */
export function loadLoraAdapter(model: LoraHost, dir: string): Map<string, LoraAdapter> {
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
