/**
 * The tfjs browser format: model.json (topology + weights manifest) and binary weight shards,
 * loadable by `tf.loadLayersModel` once the package's layer classes are registered.
 *   saveTfjs(model, 'out/', {dtype: 'float16'});
 *   const ckpt = openTfjs('out/');   await ckpt.loadInto(new CausalLMCore(ckpt.config, {init: 'zeros'}));
 *
 * Weights are written and read one tensor at a time (a 2B model is ~10 GB in float32, more than
 * one ArrayBuffer may hold). saveTfjs's optional quantization uses tfjs's own manifest encoding:
 * float16, or uint8 affine per tensor (value = q * scale + min), which every tfjs loader decodes.
 * The loader also reads `griffin convert`'s compact exports (converters/tfjs_export.ts; the
 * manifest's checks and reading: converters/tfjs_weights.ts; docs/compact-format.md).
 */
import * as fs from 'fs';
import * as path from 'path';
import {f32ToF16} from '../ops/compact/half';
import {RecurrentGemmaConfig} from '../src/config';
import type {CausalLMCore} from '../src/core/model';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';
import {writeDirAtomicSync} from './atomic_dir';
import {CheckpointReader, checkpointTensors, ModelParameters, readTensorData} from './checkpoint_tensors';
import {checkTensorList} from './config_tensors';
import {keepBeside} from './model_dir';
import {CheckpointError} from './safetensors';
import {
  checkManifestPaths,
  float32BytesOf,
  type GriffinMetadata,
  modelTensors,
  planWeights,
  readStored,
  storedSpecOf,
  type WeightSpec,
  writeStored,
} from './tfjs_weights';

export type {WeightSpec};

export type WeightDtype = 'float32' | 'float16' | 'uint8';

export interface TfjsSaveOptions {
  /** Storage dtype of the weights; default float32. */
  dtype?: WeightDtype;
  /** Shard size in bytes; default 4 MiB, as tfjs's own converter (good for browser caches). */
  shardBytes?: number;
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

export interface ModelJson {
  modelTopology?: unknown;
  weightsManifest?: {paths: string[]; weights: WeightSpec[]}[];
  userDefinedMetadata?: {griffin?: GriffinMetadata};
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

/** Opens a tfjs-format directory; loadInto checks every name, shape, encoding and shard size before writing any weight. */
export function openTfjs(dir: string): CheckpointReader {
  const {json, config} = readModelJson(dir);
  const file = path.join(dir, MODEL_JSON);
  // The manifest checked on its own now (encodings, compact entries), then its tensors against the
  // config before the caller builds a model of the config's size (a manifest name is the HF name
  // with a '/' after the layer's name; a compact matrix counts with its own shape, not its words').
  const plan = planWeights(file, json.weightsManifest!, json.userDefinedMetadata, null);
  checkTensorList(config, file, new Map(plan.tensors.map((t) => [t.name.replace('/', '.'), {shape: t.shape, file}])));
  const stored = storedSpecOf(file, plan, json.userDefinedMetadata);
  return {
    where: dir,
    config,
    storedDtype: stored.dtype,
    storedGroupSize: stored.groupSize,
    storedZeroPoints: stored.zeroPoints,
    float32Bytes: float32BytesOf(plan),
    loadInto: (model, onProgress) => loadTfjsInto(model, dir, json, onProgress),
  };
}

/** Positional reads over one manifest group's shards, as if they were one file. */
class ShardReader {
  private readonly starts: number[] = [];
  private readonly fds: number[] = [];

  constructor(
    private readonly files: string[],
    sizes: number[],
  ) {
    let off = 0;
    for (const n of sizes) {
      this.starts.push(off);
      off += n;
    }
    this.starts.push(off);
  }

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const at = offset + got;
      let i = 0;
      while (this.starts[i + 1] <= at) i++;
      this.fds[i] ??= fs.openSync(this.files[i], 'r');
      const n = fs.readSync(
        this.fds[i],
        out,
        got,
        Math.min(length - got, this.starts[i + 1] - at),
        at - this.starts[i],
      );
      if (n <= 0) throw new CheckpointError(`${this.files[i]}: shorter than when it was checked`);
      got += n;
    }
    return out;
  }

  close(): void {
    for (const fd of this.fds) if (fd != null) fs.closeSync(fd);
  }
}

async function loadTfjsInto(
  model: ModelParameters,
  dir: string,
  json: ModelJson,
  onProgress?: OnProgress,
): Promise<void> {
  const file = path.join(dir, MODEL_JSON);
  const {byName, shapes} = modelTensors(model);
  const plan = planWeights(file, json.weightsManifest!, json.userDefinedMetadata, shapes);
  const readers = json.weightsManifest!.map((group, g) => {
    const files = group.paths.map((p) => path.join(dir, p));
    const sizes = files.map((f) => {
      if (!fs.existsSync(f)) throw new CheckpointError(`${f}: weight shard listed in ${file} not found`);
      return fs.statSync(f).size;
    });
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== plan.groupBytes[g])
      throw new CheckpointError(
        `${file}: the shards hold ${total} bytes, the manifest needs ${plan.groupBytes[g]} (truncated or corrupt)`,
      );
    return new ShardReader(files, sizes);
  });
  try {
    let loaded = 0;
    for (const t of plan.tensors) {
      writeStored(
        byName.get(t.name)!,
        readStored(t, (ref) => readers[ref.group].read(ref.offset, ref.length)),
      );
      onProgress?.({loaded: ++loaded, total: plan.tensors.length, unit: 'tensors', name: t.name});
    }
  } finally {
    for (const r of readers) r.close();
  }
}
