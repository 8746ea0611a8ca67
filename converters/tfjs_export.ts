/**
 * `griffin convert`'s writer: a checkpoint (HF or tfjs layout) to the tfjs layout, tensor by
 * tensor, the weight matrices stored as float32, float16, bfloat16, int8 or int4
 * (docs/compact-format.md). One tensor is held at a time: read, packed on the host, appended to
 * the shards, dropped. The directory appears whole or not at all (converters/atomic_dir.ts), the
 * model that was there replaced (converters/model_dir.ts).
 *   const src = openTensorSource('hf-ckpt/');
 *   const r = await exportTfjs(src, 'web-int4/', {dtype: 'int4', groupSize: 64});   // r.weightBytes
 *
 * float32 and float16 exports use tfjs's own encodings only (plain tf.loadLayersModel reads them);
 * bfloat16 / int8 / int4 matrices are packed 32-bit words (int32 entries) with float16 scales and
 * uint8 zero points, described in userDefinedMetadata.griffin.compact. Vectors (norms, biases,
 * gates) stay float32 in every export but uint8 (converters/tfjs_format.ts writes that one).
 */
import * as fs from 'fs';
import * as path from 'path';
import {type CompactSpec, checkSpec, type PackedMatrix, perWord, quantize, weightSpec} from '../ops/compact/format';
import {f32ToF16} from '../ops/compact/half';
import {parameterCount, type RecurrentGemmaConfig} from '../src/config';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';
import {writeDirAtomic} from './atomic_dir';
import {CheckpointError, readHFConfig} from './hf';
import {checkOutputDir, copyTokenizerFiles, keepBeside} from './model_dir';
import {modelSkeleton} from './model_skeleton';
import {iterateCheckpoint, listCheckpoint} from './safetensors';
import {FORMAT_TAG, MODEL_JSON, readModelJson} from './tfjs_format';
import {
  type CompactEntry,
  type GriffinMetadata,
  planWeights,
  readStored,
  type StoredSpec,
  type WeightSpec,
} from './tfjs_weights';

/** The weight dtypes of a convert (uint8 is tfjs_format's). */
export type ExportDtype = 'float32' | 'float16' | 'bfloat16' | 'int8' | 'int4';

export interface ExportOptions {
  dtype: ExportDtype;
  /** int4: values per scale (32, 64 or 128; default 64). */
  groupSize?: number;
  /** int4: a zero point per group. */
  zeroPoints?: boolean;
  /** Bytes per weight shard; default 4 MiB, as tfjs's own converter. */
  shardBytes?: number;
  /** Bytes of the source read so far, of all it holds. */
  onProgress?: OnProgress;
  /** Carry the input's tokenizer files along (default true; the output's old ones go either way). */
  tokenizer?: boolean;
  /**
   * Makes what packs the matrices (default: format.ts's data-free fit), called once the source and
   * the output are checked, before anything is written (calibrated int4: converters/calibrated_export.ts).
   */
  packer?: () => Promise<PackMatrix>;
}

/** Packs one matrix of the source (its manifest name, values [rows * cols]) for `spec`. */
export type PackMatrix = (
  name: string,
  values: Float32Array,
  rows: number,
  cols: number,
  spec: CompactSpec,
) => PackedMatrix;

/** A tensor of a source: float32 values, usable until the next one is asked for. */
export interface SourceTensor {
  /** The manifest (tfjs) name. */
  name: string;
  shape: number[];
  data: Float32Array;
}

/** A checkpoint read one tensor at a time. */
export interface TensorSource {
  where: string;
  /** The directory (for the refusal to write onto it, and the tokenizer files carried along). */
  dir: string;
  config: RecurrentGemmaConfig;
  /** Every tensor's manifest name and shape, from headers alone. */
  list: {name: string; shape: number[]}[];
  /** Bytes the tensors take in the source (what progress counts). */
  bytes: number;
  /** The tensors, one at a time, with the bytes each took in the source. */
  tensors(): AsyncIterable<SourceTensor & {sourceBytes: number}>;
}

/** Files beside the weights that belong to the model and go along with it (its generation settings). */
const MODEL_EXTRAS = ['generation_config.json'];

/**
 * Copies into `out` what a convert carries along from the input directory: the tokenizer's files
 * (converters/model_dir.ts) unless `tokenizer` is false, and the generation settings; returns their names.
 */
export function carryFiles(dir: string, out: string, opts: {tokenizer: boolean}): string[] {
  const names = opts.tokenizer ? copyTokenizerFiles(dir, out) : [];
  for (const f of MODEL_EXTRAS) {
    if (!fs.statSync(path.join(dir, f), {throwIfNoEntry: false})?.isFile()) continue;
    fs.copyFileSync(path.join(dir, f), path.join(out, f));
    names.push(f);
  }
  return names;
}

const q = JSON.stringify;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** An HF checkpoint directory as a source (names translated to the manifest's; a tied head's copy skipped). */
function hfSource(dir: string): TensorSource {
  const config = readHFConfig(dir);
  const names = new Map([...modelSkeleton(config).tensors].map(([hf, t]) => [hf, t.tfjsName]));
  const metas = [...listCheckpoint(dir).values()].filter(
    (m) => !(m.name === 'lm_head.weight' && config.tie_word_embeddings),
  );
  for (const m of metas) {
    if (!names.has(m.name))
      throw new CheckpointError(
        `${m.file}: unexpected tensor ${q(m.name)} (not part of a RecurrentGemma with this config)`,
      );
    if (!['F32', 'F16', 'BF16', 'F64'].includes(m.dtype))
      throw new CheckpointError(`${m.file}: tensor ${q(m.name)} has dtype ${m.dtype}, expected a float type`);
  }
  const keep = new Set(metas.map((m) => m.name));
  const sizes = new Map(metas.map((m) => [m.name, m.end - m.begin]));
  return {
    where: dir,
    dir,
    config,
    list: metas.map((m) => ({name: names.get(m.name)!, shape: [...m.shape]})),
    bytes: metas.reduce((n, m) => n + (m.end - m.begin), 0),
    async *tensors() {
      for await (const t of iterateCheckpoint(dir, keep)) {
        yield {name: names.get(t.name)!, shape: t.shape, data: t.data as Float32Array, sourceBytes: sizes.get(t.name)!};
      }
    },
  };
}

/** A tfjs-layout directory as a source (compact matrices unpacked one at a time). */
function tfjsSource(dir: string): TensorSource {
  const {json, config} = readModelJson(dir);
  const file = path.join(dir, MODEL_JSON);
  const groups = json.weightsManifest!;
  const plan = planWeights(file, groups, json.userDefinedMetadata, null);
  const files = groups.map((g) => g.paths.map((p) => path.join(dir, p)));
  groups.forEach((_, g) => {
    const total = files[g].reduce((n, f) => {
      if (!fs.existsSync(f)) throw new CheckpointError(`${f}: weight shard listed in ${file} not found`);
      return n + fs.statSync(f).size;
    }, 0);
    if (total !== plan.groupBytes[g])
      throw new CheckpointError(
        `${file}: the shards hold ${total} bytes, the manifest needs ${plan.groupBytes[g]} (truncated or corrupt)`,
      );
  });
  /** Reads `length` bytes at `offset` of group g's shards taken as one stream. */
  const readAt = (g: number, offset: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    let got = 0,
      start = 0;
    for (const f of files[g]) {
      const size = fs.statSync(f).size;
      const at = offset + got;
      if (at < start + size && got < length) {
        const fd = fs.openSync(f, 'r');
        try {
          while (got < length && offset + got < start + size) {
            const n = fs.readSync(
              fd,
              out,
              got,
              Math.min(length - got, start + size - (offset + got)),
              offset + got - start,
            );
            if (n <= 0) throw new CheckpointError(`${f}: shorter than when it was checked`);
            got += n;
          }
        } finally {
          fs.closeSync(fd);
        }
      }
      start += size;
    }
    return out;
  };
  const sourceBytes = (t: (typeof plan.tensors)[number]) =>
    t.kind === 'plain' ? t.ref.length : t.words.length + (t.scales?.length ?? 0) + (t.zeros?.length ?? 0);
  return {
    where: dir,
    dir,
    config,
    list: plan.tensors.map((t) => ({name: t.name, shape: t.shape})),
    bytes: plan.groupBytes.reduce((a, b) => a + b, 0),
    async *tensors() {
      for (const t of plan.tensors) {
        const data = readStored(t, (ref) => readAt(ref.group, ref.offset, ref.length)).values();
        yield {name: t.name, shape: t.shape, data, sourceBytes: sourceBytes(t)};
      }
    },
  };
}

/** A checkpoint directory (either layout) as a tensor source; its config and tensor list checked, no weight read. */
export function openTensorSource(dir: string): TensorSource {
  if (!fs.existsSync(dir)) throw new CheckpointError(`${dir}: no such directory`);
  if (!fs.statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: not a directory`);
  return fs.existsSync(path.join(dir, MODEL_JSON)) ? tfjsSource(dir) : hfSource(dir);
}

/** The spec the matrices are packed with (null: float32 or tfjs float16). */
function compactSpecOf(opts: ExportOptions): CompactSpec | null {
  if (opts.dtype === 'float32' || opts.dtype === 'float16') {
    if (opts.groupSize != null || opts.zeroPoints)
      throw new Error(`groupSize and zeroPoints are for int4, not ${opts.dtype}`);
    return null;
  }
  return weightSpec(opts.dtype, {groupSize: opts.groupSize, zeroPoints: opts.zeroPoints});
}

/**
 * Checks a source against its config before anything is written: every tensor a model of the
 * config has, nothing else, matrices that the dtype can pack, and as many values as the config needs.
 */
function checkSource(src: TensorSource, matrices: Set<string>, expected: Set<string>, spec: CompactSpec | null): void {
  const seen = new Set<string>();
  for (const t of src.list) {
    if (!expected.has(t.name)) throw new CheckpointError(`${src.where}: unexpected tensor ${q(t.name)}`);
    if (seen.has(t.name)) throw new CheckpointError(`${src.where}: tensor ${q(t.name)} appears twice`);
    seen.add(t.name);
    if (!matrices.has(t.name)) continue;
    if (t.shape.length !== 2)
      throw new CheckpointError(`${src.where}: tensor ${q(t.name)} has shape [${t.shape}], expected a matrix`);
    if (spec != null) {
      try {
        checkSpec(spec, t.shape[0], t.shape[1], `tensor ${q(t.name)}`);
      } catch (e) {
        throw new CheckpointError(`${src.where}: ${(e as Error).message}`);
      }
    }
  }
  const missing = [...expected].filter((n) => !seen.has(n));
  if (missing.length > 0)
    throw new CheckpointError(
      `${src.where}: lacks ${missing.length} tensor(s) the config needs, first ${q(missing[0])}`,
    );
  const values = src.list.reduce((n, t) => n + numel(t.shape), 0);
  const need = parameterCount(src.config);
  if (values !== need)
    throw new CheckpointError(`${src.where}: its tensors hold ${values} values, a model of its config ${need}`);
}

/** Appends bytes to numbered shards of at most `shardBytes` each. */
class ShardWriter {
  readonly files: string[] = [];
  private fd = -1;
  private inShard: number;
  written = 0;

  constructor(
    private readonly dir: string,
    private readonly shardBytes: number,
  ) {
    this.inShard = shardBytes;
  }

  write(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      if (this.inShard >= this.shardBytes) {
        this.close();
        const name = `.shard${this.files.length + 1}.part`;
        this.files.push(name);
        this.fd = fs.openSync(path.join(this.dir, name), 'w');
        this.inShard = 0;
      }
      const n = Math.min(bytes.length - off, this.shardBytes - this.inShard);
      fs.writeSync(this.fd, bytes, off, n);
      off += n;
      this.inShard += n;
      this.written += n;
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Closes the last shard and gives them tfjs's names; returns the manifest's paths. */
  finish(): string[] {
    this.close();
    const n = this.files.length;
    return this.files.map((tmp, i) => {
      const name = `group1-shard${i + 1}of${n}.bin`;
      fs.renameSync(path.join(this.dir, tmp), path.join(this.dir, name));
      return name;
    });
  }
}

const view = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The manifest entries of one packed matrix (words, then scales and zero points) and its griffin.compact entry. */
function packedEntries(
  name: string,
  p: PackedMatrix,
): {entries: {spec: WeightSpec; bytes: Uint8Array}[]; entry: CompactEntry} {
  const entries: {spec: WeightSpec; bytes: Uint8Array}[] = [
    {spec: {name, shape: [p.rows, p.cols / perWord(p.dtype)], dtype: 'int32'}, bytes: view(p.data)},
  ];
  const entry: CompactEntry = {dtype: p.dtype, shape: [p.rows, p.cols]};
  const G = p.dtype === 'int4' ? p.cols / p.groupSize : 0;
  if (p.scales != null) {
    entry.scales = `${name}/scales`;
    const shape = p.dtype === 'int4' ? [p.rows, G] : [p.rows];
    // Scales are float16 values already (format.ts rounds them when made): stored as such, exactly.
    entries.push({
      spec: {name: entry.scales, shape, dtype: 'float32', quantization: {dtype: 'float16'}},
      bytes: view(f32ToF16(p.scales)),
    });
  }
  if (p.dtype === 'int4') {
    entry.groupSize = p.groupSize;
    entry.zeroPoints = p.zeros != null;
  }
  if (p.zeros != null) {
    entry.zeros = `${name}/zeros`;
    entries.push({
      spec: {name: entry.zeros, shape: [p.rows, G], dtype: 'float32', quantization: {dtype: 'uint8', min: 0, scale: 1}},
      bytes: Uint8Array.from(p.zeros),
    });
  }
  return {entries, entry};
}

/** Whether `inner` is `outer` or lies inside it (both resolved through links where they exist). */
function within(inner: string, outer: string): boolean {
  const real = (p: string) => {
    let a = path.resolve(p);
    const rest: string[] = [];
    while (!fs.existsSync(a) && path.dirname(a) !== a) {
      rest.unshift(path.basename(a));
      a = path.dirname(a);
    }
    return path.join(fs.realpathSync(a), ...rest);
  };
  const rel = path.relative(real(outer), real(inner));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export interface ExportResult {
  /** Bytes of the weight shards written. */
  weightBytes: number;
  tensors: number;
  /** Files carried along (tokenizer and the like). */
  carried: string[];
}

/** Converts `src` into the tfjs layout at `out` (see the module comment). */
export async function exportTfjs(src: TensorSource, out: string, opts: ExportOptions): Promise<ExportResult> {
  if (within(out, src.dir) && within(src.dir, out))
    throw new CheckpointError(`${out}: is the input directory; convert into another one`);
  if (within(src.dir, out))
    throw new CheckpointError(`${out}: holds the input directory ${src.dir}; convert elsewhere`);
  const spec = compactSpecOf(opts);
  const skeleton = modelSkeleton(src.config);
  const matrices = new Set([...skeleton.tensors.values()].filter((t) => t.matrix).map((t) => t.tfjsName));
  checkSource(src, matrices, new Set([...skeleton.tensors.values()].map((t) => t.tfjsName)), spec);
  const shardBytes = opts.shardBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(shardBytes) || shardBytes < 1024)
    throw new Error(`shardBytes must be an integer >= 1024, got ${shardBytes}`);

  checkOutputDir(out);
  const pack: PackMatrix = opts.packer != null ? await opts.packer() : (_, v, r, c, s) => quantize(v, r, c, s);
  const result: ExportResult = {weightBytes: 0, tensors: 0, carried: []};
  // One model per directory: the old one (any format) and its tokenizer go, other files stay.
  await writeDirAtomic(
    out,
    async (tmp) => {
      const writer = new ShardWriter(tmp, shardBytes);
      const specs: WeightSpec[] = [];
      const compact: Record<string, CompactEntry> = {};
      let read = 0;
      try {
        for await (const t of src.tensors()) {
          if (matrices.has(t.name) && spec != null) {
            const {entries, entry} = packedEntries(t.name, pack(t.name, t.data, t.shape[0], t.shape[1], spec));
            for (const e of entries) {
              specs.push(e.spec);
              writer.write(e.bytes);
            }
            compact[t.name] = entry;
          } else if (matrices.has(t.name) && opts.dtype === 'float16') {
            specs.push({name: t.name, shape: t.shape, dtype: 'float32', quantization: {dtype: 'float16'}});
            writer.write(view(f32ToF16(t.data)));
          } else {
            specs.push({name: t.name, shape: t.shape, dtype: 'float32'});
            writer.write(view(t.data));
          }
          read += t.sourceBytes;
          result.tensors++;
          opts.onProgress?.({loaded: read, total: src.bytes, unit: 'bytes', name: t.name});
        }
      } finally {
        writer.close();
      }
      const paths = writer.finish();
      result.weightBytes = writer.written;
      const weights: StoredSpec =
        spec?.dtype === 'int4'
          ? {dtype: 'int4', groupSize: spec.groupSize, zeroPoints: spec.zeroPoints === true}
          : {dtype: opts.dtype};
      const griffin: GriffinMetadata = {
        config: src.config.toJSON(),
        weights,
        ...(Object.keys(compact).length > 0 ? {compact} : {}),
      };
      const modelJson = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: FORMAT_TAG,
        modelTopology: skeleton.topology,
        weightsManifest: [{paths, weights: specs}],
        userDefinedMetadata: {griffin},
      };
      fs.writeFileSync(path.join(tmp, MODEL_JSON), JSON.stringify(modelJson));
      result.carried = carryFiles(src.dir, tmp, {tokenizer: opts.tokenizer ?? true});
    },
    {keep: keepBeside({tokenizer: true})},
  );
  return result;
}
