/**
 * The weights of a tfjs-layout model.json: tfjs's own encodings (float32, float16, uint8 affine)
 * and griffin's compact matrices (bfloat16, int8, int4 as packed 32-bit words with their scales
 * and zero points, described in `userDefinedMetadata.griffin.compact`; docs/compact-format.md).
 * Both loaders (the file one, converters/tfjs_format.ts, and the URL one, converters/tfjs_url.ts)
 * check a manifest's shard paths with checkManifestPaths and the manifest whole with planWeights
 * before any byte is read, then read each tensor's bytes where the plan says and write it into
 * the model as it is stored when the model holds it so.
 *   const json = JSON.parse(fs.readFileSync('web/model.json', 'utf8'));
 *   const {byName, shapes} = modelTensors(model);
 *   const plan = planWeights('web/model.json', json.weightsManifest, json.userDefinedMetadata, shapes);
 *   for (const t of plan.tensors) writeStored(byName.get(t.name)!, readStored(t, (ref) => bytes.subarray(ref.offset)));
 *
 * Shape letters: R rows (output features), C cols (input features), G groups per row (C / groupSize).
 */

import {CompactParameter} from '../layers/compact';
import {
  COMPACT_DTYPES,
  type CompactDtype,
  type CompactSpec,
  checkSpec,
  dequantize,
  type PackedMatrix,
  packedRows,
  perWord,
  sameSpec,
  specOf,
  WEIGHT_DTYPES,
  type WeightDtype,
} from '../ops/compact/format';
import {f16ToF32} from '../ops/compact/half';
import {type CheckpointTensor, checkpointTensors, type ModelParameters, writeTensorData} from './checkpoint_tensors';
import {CheckpointError} from './safetensors';

/** One entry of a tfjs weights manifest (tfjs's WeightsManifestEntry, as far as griffin writes it). */
export interface WeightSpec {
  name: string;
  shape: number[];
  /** float32 values (possibly quantized by tfjs's own encodings), or int32: a compact matrix's packed words. */
  dtype: 'float32' | 'int32';
  quantization?: {dtype: 'float16'} | {dtype: 'uint8'; min: number; scale: number};
}

/** How one compact matrix is stored: `griffin.compact[name]`, where `name` is the manifest entry of its words. */
export interface CompactEntry {
  dtype: CompactDtype;
  /** The matrix's own shape [R, C]; its words entry has shape [R, C / (values per word)]. */
  shape: [number, number];
  /** int4: values per scale along a row (32, 64 or 128). */
  groupSize?: number;
  /** int4: whether each group has a zero point. */
  zeroPoints?: boolean;
  /** int8 / int4: the manifest entry of the scales, float32 [R] (int8) or [R, G] (int4), stored as float16. */
  scales?: string;
  /** int4 with zero points: the manifest entry of the zero points, [R, G], stored as uint8. */
  zeros?: string;
}

/** `userDefinedMetadata.griffin` of a model.json. */
export interface GriffinMetadata {
  config?: Record<string, unknown>;
  /** What the export's matrices hold (what fromPretrained's dtype 'auto' keeps); written by `griffin convert`. */
  weights?: {dtype: WeightDtype; groupSize?: number; zeroPoints?: boolean};
  compact?: Record<string, CompactEntry>;
}

export const bytesPer = (spec: WeightSpec) =>
  spec.quantization?.dtype === 'float16' ? 2 : spec.quantization?.dtype === 'uint8' ? 1 : 4;

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Bytes an entry takes in the shards. */
export const specBytes = (spec: WeightSpec) => count(spec.shape) * bytesPer(spec);

/** Values of a float32 entry in any of tfjs's encodings. */
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

/** A view of `bytes` as 32-bit words (copied only when not 4-byte aligned). */
function words(bytes: Uint8Array): Int32Array {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** Where an entry's bytes are: group `group` of the manifest, `offset` bytes into its shards' concatenation. */
export interface SpecRef {
  spec: WeightSpec;
  group: number;
  offset: number;
  length: number;
}

/** What one model tensor is read from. */
export type TensorPlan =
  | {kind: 'plain'; name: string; shape: number[]; ref: SpecRef}
  | {
      kind: 'compact';
      name: string;
      shape: number[];
      spec: CompactSpec;
      groupSize: number;
      words: SpecRef;
      scales: SpecRef | null;
      zeros: SpecRef | null;
    };

export interface WeightPlan {
  /** One per model tensor, in manifest order (of the tensor's values or words). */
  tensors: TensorPlan[];
  /** Bytes each manifest group's shards must hold together. */
  groupBytes: number[];
}

const isObject = (x: unknown): x is Record<string, unknown> => x != null && typeof x === 'object' && !Array.isArray(x);
const q = JSON.stringify;
const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

function checkStandard(where: string, s: WeightSpec): void {
  if (!isObject(s) || typeof s.name !== 'string') throw new CheckpointError(`${where}: a manifest entry has no name`);
  if (!Array.isArray(s.shape) || s.shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new CheckpointError(`${where}: weight ${q(s.name)} has no valid shape (${q(s.shape)})`);
  const qd = s.quantization;
  const ok =
    (s.dtype === 'float32' &&
      (qd == null ||
        qd.dtype === 'float16' ||
        (qd.dtype === 'uint8' && Number.isFinite(qd.min) && Number.isFinite(qd.scale)))) ||
    (s.dtype === 'int32' && qd == null);
  if (!ok) {
    throw new CheckpointError(
      `${where}: weight ${q(s.name)} has an unknown encoding (dtype ${q(s.dtype)}${qd ? `, quantization ${q(qd)}` : ''})`,
    );
  }
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

/**
 * Checks a manifest whole, without reading any weight: every entry's encoding, every compact
 * entry (its dtype, that its group size divides its width, its words, scales and zero points
 * present and shaped as its shape needs), and, given `expected` (tfjs name -> shape; null to take
 * the manifest's own shapes), that the tensors are exactly the model's. One-line CheckpointError otherwise.
 */
export function planWeights(
  where: string,
  groups: {weights: WeightSpec[]}[],
  metadata: unknown,
  expected: Map<string, number[]> | null,
): WeightPlan {
  const refs = new Map<string, SpecRef>();
  const order: string[] = [];
  const groupBytes = groups.map((g, group) => {
    if (!isObject(g) || !Array.isArray(g.weights))
      throw new CheckpointError(`${where}: a manifest group has no weights`);
    let offset = 0;
    for (const spec of g.weights) {
      checkStandard(where, spec);
      if (refs.has(spec.name)) throw new CheckpointError(`${where}: weight ${q(spec.name)} is listed twice`);
      const length = specBytes(spec);
      refs.set(spec.name, {spec, group, offset, length});
      order.push(spec.name);
      offset += length;
    }
    return offset;
  });

  const griffin = isObject(metadata) && isObject(metadata.griffin) ? metadata.griffin : {};
  const compact = griffin.compact ?? {};
  if (!isObject(compact)) throw new CheckpointError(`${where}: griffin.compact is not an object`);
  const partOf = new Map<string, string>(); // scales / zeros entry -> the compact weight it belongs to
  const plans = new Map<string, TensorPlan>();
  const entryRef = (w: string, what: string, name: unknown, shape: number[], dtype: WeightSpec['dtype']) => {
    if (typeof name !== 'string') throw new CheckpointError(`${where}: compact weight ${q(w)} names no ${what} entry`);
    const ref = refs.get(name);
    if (ref == null) throw new CheckpointError(`${where}: compact weight ${q(w)}: its ${what} ${q(name)} are missing`);
    if (ref.spec.dtype !== dtype || !sameShape(ref.spec.shape, shape)) {
      throw new CheckpointError(
        `${where}: compact weight ${q(w)}: its ${what} ${q(name)} are ${ref.spec.dtype} [${ref.spec.shape}], expected ${dtype} [${shape}]`,
      );
    }
    if (partOf.has(name) || compact[name] != null)
      throw new CheckpointError(
        `${where}: entry ${q(name)} is used twice (by ${q(w)} and ${q(partOf.get(name) ?? name)})`,
      );
    partOf.set(name, w);
    return ref;
  };
  for (const [w, e] of Object.entries(compact)) {
    if (!isObject(e)) throw new CheckpointError(`${where}: griffin.compact[${q(w)}] is not an object`);
    const entry = e as unknown as CompactEntry;
    if (!(COMPACT_DTYPES as readonly string[]).includes(entry.dtype as string)) {
      throw new CheckpointError(
        `${where}: compact weight ${q(w)} has an unknown encoding ${q(entry.dtype)} (expected one of ${COMPACT_DTYPES.join(', ')})`,
      );
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || shape.length !== 2 || shape.some((d) => !Number.isInteger(d) || d < 1))
      throw new CheckpointError(`${where}: compact weight ${q(w)} has shape ${q(shape)}, expected [rows, cols]`);
    const [R, C] = shape;
    const spec: CompactSpec =
      entry.dtype === 'int4'
        ? {dtype: 'int4', groupSize: entry.groupSize, zeroPoints: entry.zeroPoints === true}
        : {dtype: entry.dtype};
    if (entry.dtype === 'int4' && entry.groupSize == null)
      throw new CheckpointError(`${where}: compact weight ${q(w)} is int4 without a groupSize`);
    let groupSize: number;
    try {
      groupSize = checkSpec(spec, R, C, `compact weight ${q(w)}`);
    } catch (err) {
      throw new CheckpointError(`${where}: ${(err as Error).message}`);
    }
    const wordsRef = refs.get(w);
    if (wordsRef == null) throw new CheckpointError(`${where}: compact weight ${q(w)} has no manifest entry`);
    const wordShape = [R, C / perWord(entry.dtype)];
    if (wordsRef.spec.dtype !== 'int32' || !sameShape(wordsRef.spec.shape, wordShape)) {
      throw new CheckpointError(
        `${where}: compact weight ${q(w)} is stored as ${wordsRef.spec.dtype} [${wordsRef.spec.shape}], its ${entry.dtype} words need int32 [${wordShape}]`,
      );
    }
    const G = entry.dtype === 'int4' ? C / groupSize : 1;
    let scales: SpecRef | null = null,
      zeros: SpecRef | null = null;
    if (entry.dtype === 'int8' || entry.dtype === 'int4') {
      scales = entryRef(w, 'scales', entry.scales, entry.dtype === 'int8' ? [R] : [R, G], 'float32');
    } else if (entry.scales != null) {
      throw new CheckpointError(`${where}: compact weight ${q(w)} is ${entry.dtype}, which has no scales`);
    }
    if (spec.zeroPoints) zeros = entryRef(w, 'zero points', entry.zeros, [R, G], 'float32');
    else if (entry.zeros != null)
      throw new CheckpointError(`${where}: compact weight ${q(w)} names zero points but is not int4 with zeroPoints`);
    plans.set(w, {kind: 'compact', name: w, shape: [R, C], spec, groupSize, words: wordsRef, scales, zeros});
  }
  const tensors: TensorPlan[] = [];
  for (const name of order) {
    if (partOf.has(name)) continue;
    const ref = refs.get(name)!;
    if (!plans.has(name) && ref.spec.dtype !== 'float32') {
      throw new CheckpointError(`${where}: weight ${q(name)} is int32 words without a griffin.compact entry`);
    }
    const plan = plans.get(name) ?? {kind: 'plain', name, shape: ref.spec.shape, ref};
    if (expected != null) {
      const want = expected.get(name);
      if (want == null) throw new CheckpointError(`${where}: unexpected weight ${q(name)}`);
      if (!sameShape(plan.shape, want))
        throw new CheckpointError(`${where}: weight ${q(name)} has shape [${plan.shape}], the config needs [${want}]`);
    }
    tensors.push(plan);
  }
  if (expected != null) {
    const seen = new Set(tensors.map((t) => t.name));
    const missing = [...expected.keys()].filter((n) => !seen.has(n));
    if (missing.length > 0) throw new CheckpointError(`${where}: missing weight ${q(missing[0])}`);
  }
  return {tensors, groupBytes};
}

/** The model's tensors by tfjs name (the manifest's names), and their shapes for planWeights. */
export function modelTensors(model: ModelParameters): {
  byName: Map<string, CheckpointTensor>;
  shapes: Map<string, number[]>;
} {
  const byName = new Map([...checkpointTensors(model).values()].map((t) => [t.tfjsName, t]));
  return {byName, shapes: new Map([...byName].map(([n, t]) => [n, t.shape]))};
}

/** A tensor as read: its packed matrix when it is stored (or can be taken) packed, and its float32 values on demand. */
export interface StoredTensor {
  packed: PackedMatrix | null;
  values(): Float32Array;
}

/** Reads one planned tensor; `read` hands over the bytes of an entry (only this tensor's are asked for). */
export function readStored(plan: TensorPlan, read: (ref: SpecRef) => Uint8Array): StoredTensor {
  if (plan.kind === 'plain') {
    const bytes = read(plan.ref);
    const [R, C] = plan.shape;
    // A float16 matrix of tfjs's own encoding is already float16 words: element 2j in the low half.
    const packed: PackedMatrix | null =
      plan.ref.spec.quantization?.dtype === 'float16' && plan.shape.length === 2 && C % 2 === 0
        ? {dtype: 'float16', rows: R, cols: C, groupSize: 0, data: words(bytes), scales: null, zeros: null}
        : null;
    return {packed, values: () => decode(bytes, plan.ref.spec)};
  }
  const [R, C] = plan.shape;
  const packed: PackedMatrix = {
    dtype: plan.spec.dtype,
    rows: R,
    cols: C,
    groupSize: plan.groupSize,
    data: words(read(plan.words)),
    scales: plan.scales ? decode(read(plan.scales), plan.scales.spec) : null,
    zeros: plan.zeros ? decode(read(plan.zeros), plan.zeros.spec) : null,
  };
  return {packed, values: () => dequantize(packed)};
}

/**
 * Writes a tensor as read into the model: packed words straight into compact parameters of the
 * same encoding (no float32 copy), otherwise its float32 values (dequantized, and packed again
 * by a compact parameter of another encoding).
 */
export function writeStored(t: CheckpointTensor, stored: StoredTensor): void {
  const p = stored.packed;
  const asStored = p != null && t.parts.every((v) => v instanceof CompactParameter && sameSpec(v.spec, specOf(p)));
  if (!asStored) {
    writeTensorData(t, stored.values());
    return;
  }
  let r0 = 0;
  for (const v of t.parts as CompactParameter[]) {
    const rows = v.shape[0] as number;
    v.writePacked(t.parts.length === 1 ? p : packedRows(p, r0, r0 + rows));
    r0 += rows;
  }
}

/** Bytes the manifest's tensors would take as float32 (what a model holding them in float32 needs). */
export function float32BytesOf(plan: WeightPlan): number {
  return plan.tensors.reduce((n, t) => n + 4 * count(t.shape), 0);
}

export interface StoredSpec {
  dtype: WeightDtype;
  groupSize?: number;
  zeroPoints?: boolean;
}

/**
 * What the matrices are stored as, for dtype 'auto': the export's own word (griffin.weights),
 * else float16 when every matrix of an older export is tfjs float16, else float32.
 */
export function storedSpecOf(where: string, plan: WeightPlan, metadata: unknown): StoredSpec {
  const w =
    isObject(metadata) && isObject(metadata.griffin) ? (metadata.griffin as GriffinMetadata).weights : undefined;
  if (w != null) {
    if (!isObject(w) || !(WEIGHT_DTYPES as readonly string[]).includes(w.dtype as string))
      throw new CheckpointError(`${where}: griffin.weights has an unknown dtype ${q((w as {dtype?: unknown})?.dtype)}`);
    return w.dtype === 'int4'
      ? {dtype: 'int4', groupSize: w.groupSize ?? 64, zeroPoints: w.zeroPoints === true}
      : {dtype: w.dtype};
  }
  const matrices = plan.tensors.filter((t) => t.shape.length === 2);
  const f16 =
    matrices.length > 0 && matrices.every((t) => t.kind === 'plain' && t.ref.spec.quantization?.dtype === 'float16');
  return {dtype: f16 ? 'float16' : 'float32'};
}
