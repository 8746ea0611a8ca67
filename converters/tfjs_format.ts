/**
 * The tfjs browser format: model.json (topology + weights manifest) and binary weight shards,
 * loadable by `tf.loadLayersModel` once the package's layer classes are registered.
 *   saveTfjs(model, 'out/', {dtype: 'float16'});
 *   const ckpt = openTfjs('out/');   await ckpt.loadInto(new CausalLMCore(ckpt.config, {init: 'zeros'}));
 *
 * Weights are written and read one tensor at a time (a 2B model is ~10 GB in float32, more than
 * one ArrayBuffer may hold). Optional quantization uses tfjs's own manifest encoding: float16,
 * or uint8 affine per tensor (value = q * scale + min), which every tfjs loader decodes.
 */
import * as fs from 'fs';
import * as path from 'path';
import {f16ToF32, f32ToF16} from '../ops/compact/half';
import {RecurrentGemmaConfig} from '../src/config';
import type {CausalLMCore} from '../src/core/model';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';
import {writeDirAtomicSync} from './atomic_dir';
import {
  CheckpointReader,
  checkpointTensors,
  ModelParameters,
  readTensorData,
  writeTensorData,
} from './checkpoint_tensors';
import {checkTensorList} from './config_tensors';
import {keepBeside} from './model_dir';
import {CheckpointError} from './safetensors';

export type WeightDtype = 'float32' | 'float16' | 'uint8';

export interface TfjsSaveOptions {
  /** Storage dtype of the weights; default float32. */
  dtype?: WeightDtype;
  /** Shard size in bytes; default 4 MiB, as tfjs's own converter (good for browser caches). */
  shardBytes?: number;
}

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: {dtype: 'float16'} | {dtype: 'uint8'; min: number; scale: number};
}

export const MODEL_JSON = 'model.json';
export const FORMAT_TAG = 'griffin-tfjs';

function encode(
  data: Float32Array,
  dtype: WeightDtype,
): {bytes: Uint8Array; quantization?: WeightSpec['quantization']} {
  if (dtype === 'float32') return {bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength)};
  if (dtype === 'float16') {
    const h = f32ToF16(data);
    return {bytes: new Uint8Array(h.buffer), quantization: {dtype: 'float16'}};
  }
  let min = Infinity,
    max = -Infinity;
  for (const v of data) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (data.length === 0) {
    min = 0;
    max = 0;
  }
  const scale = max > min ? (max - min) / 255 : 1;
  const q = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) q[i] = Math.round((data[i] - min) / scale);
  return {bytes: q, quantization: {dtype: 'uint8', min, scale}};
}

export function decode(bytes: Uint8Array, spec: WeightSpec): Float32Array {
  const q = spec.quantization;
  if (q == null) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  if (q.dtype === 'float16') {
    return f16ToF32(new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
  }
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] * q.scale + q.min;
  return out;
}

export const bytesPer = (spec: WeightSpec) =>
  spec.quantization?.dtype === 'float16' ? 2 : spec.quantization?.dtype === 'uint8' ? 1 : 4;

/**
 * Writes model.json and group1-shard{i}of{n}.bin into dir, all or nothing (converters/atomic_dir.ts),
 * replacing the model that was there in any format (converters/model_dir.ts).
 */
export function saveTfjs(
  model: CausalLMCore,
  dir: string,
  opts: TfjsSaveOptions & {values?: Map<string, Float32Array>} = {},
): void {
  checkDtype(opts.dtype ?? 'float32');
  writeDirAtomicSync(dir, (tmp) => writeTfjsFiles(model, tmp, opts), {keep: keepBeside({tokenizer: false})});
}

function checkDtype(dtype: string): void {
  if (!['float32', 'float16', 'uint8'].includes(dtype))
    throw new Error(`dtype must be float32, float16 or uint8, got ${dtype}`);
}

/** saveTfjs's files, written straight into dir (a fresh directory: an atomic save's temporary one). */
export function writeTfjsFiles(
  model: CausalLMCore,
  dir: string,
  opts: TfjsSaveOptions & {values?: Map<string, Float32Array>} = {},
): void {
  const dtype = opts.dtype ?? 'float32';
  checkDtype(dtype);
  const shardBytes = opts.shardBytes ?? 4 * 1024 * 1024;
  fs.mkdirSync(dir, {recursive: true});
  const specs: WeightSpec[] = [];
  const paths: string[] = [];
  let fd = -1,
    inShard = shardBytes;
  const write = (bytes: Uint8Array) => {
    let off = 0;
    while (off < bytes.length) {
      if (inShard >= shardBytes) {
        if (fd >= 0) fs.closeSync(fd);
        const name = `.shard${paths.length + 1}`;
        paths.push(name);
        fd = fs.openSync(path.join(dir, name), 'w');
        inShard = 0;
      }
      const n = Math.min(bytes.length - off, shardBytes - inShard);
      fs.writeSync(fd, bytes, off, n);
      off += n;
      inShard += n;
    }
  };
  try {
    // The manifest uses tfjs's own weight names (LayerVariable.originalName), which is what
    // tf.loadLayersModel matches on; a matrix held in pieces is one weight, named as unsplit.
    for (const [name, t] of checkpointTensors(model)) {
      const {bytes, quantization} = encode(opts.values?.get(name) ?? readTensorData(t), dtype);
      specs.push({name: t.tfjsName, shape: t.shape, dtype: 'float32', ...(quantization ? {quantization} : {})});
      write(bytes);
    }
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  // Shards are named once their count is known.
  const n = paths.length;
  const names = paths.map((_, i) => `group1-shard${i + 1}of${n}.bin`);
  paths.forEach((p, i) => fs.renameSync(path.join(dir, p), path.join(dir, names[i])));
  const modelJson = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: FORMAT_TAG,
    modelTopology: model.toJSON(null, false),
    weightsManifest: [{paths: names, weights: specs}],
    userDefinedMetadata: {griffin: {config: model.config.toJSON()}},
  };
  fs.writeFileSync(path.join(dir, MODEL_JSON), JSON.stringify(modelJson));
}

interface ModelJson {
  modelTopology?: unknown;
  weightsManifest?: {paths: string[]; weights: WeightSpec[]}[];
  userDefinedMetadata?: {griffin?: {config?: Record<string, unknown>}};
}

/**
 * Refuses a manifest whose shard paths could leave the model's directory: every path is a relative
 * one made of plain names (no '..', no absolute path, no URL, no drive letter).
 */
export function checkManifestPaths(
  where: string,
  manifest: unknown,
): asserts manifest is {paths: string[]; weights: WeightSpec[]}[] {
  if (!Array.isArray(manifest)) throw new CheckpointError(`${where}: no weightsManifest`);
  for (const group of manifest) {
    const paths = (group as {paths?: unknown})?.paths;
    const weights = (group as {weights?: unknown})?.weights;
    if (!Array.isArray(paths) || paths.length === 0 || !Array.isArray(weights))
      throw new CheckpointError(`${where}: a weightsManifest group lacks its paths or weights`);
    for (const p of paths) {
      const parts = typeof p === 'string' ? p.split(/[\\/]/) : [];
      if (
        typeof p !== 'string' ||
        /^[\\/]|^[A-Za-z][A-Za-z0-9+.-]*:|\0/.test(p) ||
        parts.some((s) => s === '' || s === '.' || s === '..')
      ) {
        throw new CheckpointError(
          `${where}: weight shard path ${JSON.stringify(p)} leaves the model's directory (only relative paths of plain names are read)`,
        );
      }
    }
  }
}

/** Reads a model.json written by saveTfjs (or a converter) and checks what loading needs. */
export function readModelJson(dir: string): {json: ModelJson; config: RecurrentGemmaConfig} {
  const file = path.join(dir, MODEL_JSON);
  if (!fs.existsSync(file)) throw new CheckpointError(`${file}: not found`);
  let json: ModelJson;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const cfg = json.userDefinedMetadata?.griffin?.config;
  if (cfg == null)
    throw new CheckpointError(`${file}: no userDefinedMetadata.griffin.config (not written by griffin-tfjs)`);
  checkManifestPaths(file, json.weightsManifest);
  try {
    return {json, config: RecurrentGemmaConfig.fromJSON(cfg)};
  } catch (e) {
    throw new CheckpointError(`${file}: ${(e as Error).message}`);
  }
}

/** Opens a tfjs-format directory; loadInto checks every name, shape and shard size before writing any weight. */
export function openTfjs(dir: string): CheckpointReader {
  const {json, config} = readModelJson(dir);
  const specs = json.weightsManifest!.flatMap((g) => g.weights);
  // The manifest against the config, before the caller builds a model of the config's size. A
  // manifest name is the HF name with a '/' after the layer's name.
  const file = path.join(dir, MODEL_JSON);
  checkTensorList(config, file, new Map(specs.map((w) => [String(w.name).replace('/', '.'), {shape: w.shape, file}])));
  return {
    where: dir,
    config,
    storedDtype: storedDtypeOf(specs),
    float32Bytes: float32BytesOf(specs),
    loadInto: (model, onProgress) => loadTfjsInto(model, dir, json, onProgress),
  };
}

export function float32BytesOf(specs: WeightSpec[]): number {
  return specs.reduce((n, w) => n + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
}

/** float16 when every matrix of a tfjs manifest is stored as float16, else float32. */
export function storedDtypeOf(specs: WeightSpec[]): 'float32' | 'float16' {
  const matrices = specs.filter((w) => w.shape.length === 2);
  return matrices.length > 0 && matrices.every((w) => w.quantization?.dtype === 'float16') ? 'float16' : 'float32';
}

async function loadTfjsInto(
  model: ModelParameters,
  dir: string,
  json: ModelJson,
  onProgress?: OnProgress,
): Promise<void> {
  const file = path.join(dir, MODEL_JSON);
  const byName = new Map([...checkpointTensors(model).values()].map((t) => [t.tfjsName, t]));
  const seen = new Set<string>();
  for (const group of json.weightsManifest!) {
    let total = 0;
    for (const p of group.paths) {
      const f = path.join(dir, p);
      if (!fs.existsSync(f)) throw new CheckpointError(`${f}: weight shard listed in ${file} not found`);
      total += fs.statSync(f).size;
    }
    let need = 0;
    for (const spec of group.weights) {
      const v = byName.get(spec.name);
      if (v == null) throw new CheckpointError(`${file}: unexpected weight ${JSON.stringify(spec.name)}`);
      if (spec.shape.length !== v.shape.length || spec.shape.some((d, i) => d !== v.shape[i])) {
        throw new CheckpointError(
          `${file}: weight ${JSON.stringify(spec.name)} has shape [${spec.shape}], the config needs [${v.shape}]`,
        );
      }
      need += spec.shape.reduce((a, b) => a * b, 1) * bytesPer(spec);
      seen.add(spec.name);
    }
    if (need !== total)
      throw new CheckpointError(
        `${file}: the shards hold ${total} bytes, the manifest needs ${need} (truncated or corrupt)`,
      );
  }
  const missing = [...byName.keys()].filter((n) => !seen.has(n));
  if (missing.length > 0) throw new CheckpointError(`${file}: missing weight ${JSON.stringify(missing[0])}`);

  let loaded = 0;
  for (const group of json.weightsManifest!) {
    // Walk the shards as one byte stream, reading each weight's bytes as it comes.
    let shard = 0,
      fd = fs.openSync(path.join(dir, group.paths[0]), 'r'),
      pos = 0;
    let shardSize = fs.fstatSync(fd).size;
    try {
      for (const spec of group.weights) {
        const n = spec.shape.reduce((a, b) => a * b, 1) * bytesPer(spec);
        const bytes = new Uint8Array(n);
        let got = 0;
        while (got < n) {
          if (pos >= shardSize) {
            fs.closeSync(fd);
            fd = fs.openSync(path.join(dir, group.paths[++shard]), 'r');
            shardSize = fs.fstatSync(fd).size;
            pos = 0;
          }
          const k = fs.readSync(fd, bytes, got, Math.min(n - got, shardSize - pos), pos);
          got += k;
          pos += k;
        }
        writeTensorData(byName.get(spec.name)!, decode(bytes, spec));
        onProgress?.({loaded: ++loaded, total: byName.size, unit: 'tensors', name: spec.name});
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}
