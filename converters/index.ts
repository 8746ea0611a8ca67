/**
 * Checkpoint I/O behind `fromPretrained` and `save`: HF (config.json + safetensors) and tfjs
 * (model.json + shards) directories, and the tfjs layout at a URL. The format of a directory is
 * told by its files. I/O reads and writes tensors by name (namedParameters()); it never builds
 * the model: the caller builds it from the reader's config, with zero weights.
 *   const ckpt = await openCheckpoint('ckpt/');            // config and tensor list checked, no weight read
 *   const model = new CausalLMCore(ckpt.config, {init: 'zeros'});  await ckpt.loadInto(model);
 *   await savePretrained(model, 'out/', {format: 'tfjs', dtype: 'float16'});
 */
import * as fs from 'fs';
import * as path from 'path';
import type {RecurrentGemmaConfig} from '../src/config';
import type {CausalLMCore} from '../src/core/model';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';
import {recoverDir, writeDirAtomic} from './atomic_dir';
import {CheckpointReader, readAllTensorData} from './checkpoint_tensors';
import {CheckpointError, openHF, readHFConfig, writeHFFiles} from './hf';
import {keepBeside} from './model_dir';
import {MODEL_JSON, openTfjs, readModelJson, WeightDtype, writeTfjsFiles} from './tfjs_format';
import {isUrlSource, openTfjsUrl} from './tfjs_url';

export type {CheckpointReader};
export type CheckpointFormat = 'hf' | 'tfjs';

export interface LoadOptions {
  /** Local directories report tensors, URLs bytes (`p.unit`). */
  onProgress?: OnProgress;
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
  // Safetensors without their config.json: say that this is what is missing.
  if (fs.readdirSync(dir).some((f) => f.endsWith('.safetensors'))) return 'hf';
  throw new CheckpointError(`${dir}: neither a Hugging Face checkpoint (config.json) nor a tfjs model (model.json)`);
}

/**
 * Opens a checkpoint: a directory in either layout, or a URL (http(s)://, indexeddb://; in a
 * browser any URL) of the tfjs layout, fetched with opts.fetch. Fails on a bad config or tensor
 * list before any weight is read.
 */
export async function openCheckpoint(source: string, opts: {fetch?: typeof fetch} = {}): Promise<CheckpointReader> {
  if (isUrlSource(source)) return openTfjsUrl(source, opts.fetch);
  recoverDir(source);
  return detectFormat(source) === 'tfjs' ? openTfjs(source) : openHF(source);
}

/**
 * Saves the model to dir in one of the formats, all or nothing (converters/atomic_dir.ts); the
 * model that was there, in any format, is replaced, other files (a tokenizer) stay (converters/model_dir.ts).
 */
export async function savePretrained(model: CausalLMCore, dir: string, opts: SaveOptions = {}): Promise<void> {
  const write = await pretrainedWriter(model, opts);
  await writeDirAtomic(dir, write, {keep: keepBeside({tokenizer: false})});
}

/**
 * Checks the options and reads the weights (a GPU backend's asynchronously), then returns a
 * function writing savePretrained's files straight into a directory (an atomic save's temporary one).
 */
export async function pretrainedWriter(model: CausalLMCore, opts: SaveOptions = {}): Promise<(dir: string) => void> {
  const format = opts.format ?? 'hf';
  if (format !== 'hf' && format !== 'tfjs')
    throw new Error(`format must be 'hf' or 'tfjs', got ${JSON.stringify(format)}`);
  if (format === 'hf' && opts.dtype != null && opts.dtype !== 'float32')
    throw new Error(`the hf format is written in float32; dtype ${opts.dtype} is for the tfjs format`);
  // Host backends read synchronously; a GPU backend's weights are fetched first, asynchronously.
  const values = ['cpu', 'wasm', 'tensorflow'].includes(tf.getBackend()) ? undefined : await readAllTensorData(model);
  return format === 'hf'
    ? (dir) => writeHFFiles(model, dir, {maxShardBytes: opts.shardBytes, values})
    : (dir) => writeTfjsFiles(model, dir, {dtype: opts.dtype, shardBytes: opts.shardBytes, values});
}

/** The config of the checkpoint in `dir` (either layout), read without loading any weight. */
export function checkpointConfig(dir: string): RecurrentGemmaConfig {
  recoverDir(dir);
  return detectFormat(dir) === 'tfjs' ? readModelJson(dir).config : readHFConfig(dir);
}
