/**
 * Checkpoint formats behind `fromPretrained` and `save`: HF (config.json + safetensors) and tfjs
 * (model.json + shards). The format of a directory is told by its files.
 *   const model = await loadPretrained('ckpt/');
 *   await savePretrained(model, 'out/', {format: 'tfjs', dtype: 'float16'});
 */
import * as fs from 'fs';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';
import {readAllTensorData} from './checkpoint_tensors';
import type {RecurrentGemmaConfig} from '../src/config';
import {CheckpointError, loadHF, readHFConfig, saveHF} from './hf';
import {loadTfjs, MODEL_JSON, readModelJson, saveTfjs, WeightDtype} from './tfjs_format';

export type CheckpointFormat = 'hf' | 'tfjs';

export interface LoadOptions {
  onProgress?: (p: {loaded: number, total: number, name: string}) => void;
}

export interface SaveOptions {
  /** 'hf' (default): float32 safetensors + config.json; 'tfjs': model.json + weight shards. */
  format?: CheckpointFormat;
  /** tfjs format only: storage dtype of the weights. */
  dtype?: WeightDtype;
  /** hf: max bytes per safetensors shard; tfjs: bytes per weight shard. */
  shardBytes?: number;
}

export function detectFormat(dir: string): CheckpointFormat {
  if (!fs.existsSync(dir)) throw new CheckpointError(`${dir}: no such directory`);
  if (!fs.statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: not a directory`);
  if (fs.existsSync(path.join(dir, MODEL_JSON))) return 'tfjs';
  if (fs.existsSync(path.join(dir, 'config.json'))) return 'hf';
  throw new CheckpointError(`${dir}: neither a Hugging Face checkpoint (config.json) nor a tfjs model (model.json)`);
}

export async function loadPretrained(dir: string, opts: LoadOptions = {}): Promise<RecurrentGemmaForCausalLM> {
  return detectFormat(dir) === 'tfjs' ? loadTfjs(dir, opts.onProgress) : loadHF(dir, opts.onProgress);
}

export async function savePretrained(model: RecurrentGemmaForCausalLM, dir: string, opts: SaveOptions = {}): Promise<void> {
  const format = opts.format ?? 'hf';
  // Host backends read synchronously; a GPU backend's weights are fetched first, asynchronously.
  const values = ['cpu', 'wasm', 'tensorflow'].includes(tf.getBackend()) ? undefined : await readAllTensorData(model);
  if (format === 'hf') {
    if (opts.dtype != null && opts.dtype !== 'float32') throw new Error(`the hf format is written in float32; dtype ${opts.dtype} is for the tfjs format`);
    saveHF(model, dir, {maxShardBytes: opts.shardBytes, values});
  } else if (format === 'tfjs') {
    saveTfjs(model, dir, {dtype: opts.dtype, shardBytes: opts.shardBytes, values});
  } else {
    throw new Error(`format must be 'hf' or 'tfjs', got ${JSON.stringify(format)}`);
  }
}

/** The config of the checkpoint in `dir` (either layout), read without loading any weight. */
export function checkpointConfig(dir: string): RecurrentGemmaConfig {
  return detectFormat(dir) === 'tfjs' ? readModelJson(dir).config : readHFConfig(dir);
}
