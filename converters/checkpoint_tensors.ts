/**
 * The model's parameters as checkpoint tensors: each HF name with the variables that hold it.
 * Usually one variable per name; a vocabulary matrix past the device's binding limit is held in
 * row pieces (`model.embed_tokens.weight.piece0`, `.piece1`, ...: layers/vocab_split.ts) and is
 * still read and written here as the one tensor `model.embed_tokens.weight`.
 *   for (const [name, t] of checkpointTensors(model)) console.log(name, t.shape, readTensorData(t).length);
 *   writeTensorData(checkpointTensors(model).get('model.embed_tokens.weight')!, data);   // fills every piece
 */

import type {LayerVariable} from '../layers/base';
import {CompactParameter} from '../layers/compact';
import {PIECE_SUFFIX} from '../layers/vocab_split';
import type {WeightDtype} from '../ops/compact/format';
import type {RecurrentGemmaConfig} from '../src/config';
import type {CausalLMCore} from '../src/core/model';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';

/** What checkpoint I/O needs of a model: its config and its parameters by HF name. */
export type ModelParameters = Pick<CausalLMCore, 'config' | 'namedParameters'>;

/**
 * A checkpoint opened and checked as far as it can be without a model: its config first (the
 * caller builds the model from it, with zero weights), then its weights written into the model.
 */
export interface CheckpointReader {
  /** The directory, file or URL, for messages. */
  where: string;
  config: RecurrentGemmaConfig;
  /** The dtype its matrices are stored in: what fromPretrained's dtype 'auto' keeps. */
  storedDtype: WeightDtype;
  /** int4 storage (a compact tfjs export): its group size and whether it has zero points. */
  storedGroupSize?: number;
  storedZeroPoints?: boolean;
  /** Bytes its tensors would take as float32 (a tied LM head's copy not counted), from the header alone. */
  float32Bytes: number;
  /** Checks every name and shape against the model, then writes the weights (nothing else is created). */
  loadInto(model: ModelParameters, onProgress?: OnProgress): Promise<void>;
}

export interface CheckpointTensor {
  /** Shape of the whole tensor. */
  shape: number[];
  /** The tfjs weight name an unsplit variable would have (LayerVariable.originalName): the tfjs format's manifest name. */
  tfjsName: string;
  /** Consecutive blocks of rows (the first axis), in order; one unless the tensor is split. */
  parts: LayerVariable[];
}

const PIECE = new RegExp(`^(.*)${PIECE_SUFFIX.replace('.', '\\.')}(\\d+)$`);

/** HF name -> tensor, in the model's parameter order (a split tensor where its first piece is). */
export function checkpointTensors(model: ModelParameters): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  const pieces = new Map<string, LayerVariable[]>();
  for (const [name, v] of model.namedParameters()) {
    const m = PIECE.exec(name);
    if (m == null) {
      out.set(name, {shape: [...v.shape] as number[], tfjsName: v.originalName, parts: [v]});
      continue;
    }
    const [, base, k] = m;
    if (!pieces.has(base)) {
      pieces.set(base, []);
      out.set(base, {shape: [], tfjsName: '', parts: []}); // holds the place; filled below
    }
    pieces.get(base)![Number(k)] = v;
  }
  for (const [base, parts] of pieces) {
    if (parts.some((p) => p == null)) throw new Error(`${base}: its pieces are not numbered 0..${parts.length - 1}`);
    const rest = parts[0].shape.slice(1) as number[];
    const rows = parts.reduce((n, p) => n + (p.shape[0] as number), 0);
    const suffix = `${PIECE_SUFFIX}0`;
    const tfjsName = parts[0].originalName.endsWith(suffix)
      ? parts[0].originalName.slice(0, -suffix.length)
      : parts[0].originalName;
    out.set(base, {shape: [rows, ...rest], tfjsName, parts});
  }
  return out;
}

const size = (shape: readonly (number | null)[]) => shape.reduce((a: number, b) => a * (b as number), 1);

/** The whole tensor's float32 values (pieces concatenated); a synchronous read, as the writers are. */
export function readTensorData(t: CheckpointTensor): Float32Array {
  if (t.parts.length === 1) return t.parts[0].read().dataSync() as Float32Array;
  const out = new Float32Array(size(t.shape));
  let off = 0;
  for (const p of t.parts) {
    const d = p.read().dataSync() as Float32Array;
    out.set(d, off);
    off += d.length;
  }
  return out;
}

/**
 * Every checkpoint tensor's values, read asynchronously: the way to read a GPU backend's
 * weights (webgpu in Node has no synchronous read). The writers take the result as `values`.
 */
export async function readAllTensorData(model: ModelParameters): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of checkpointTensors(model)) {
    const parts = await Promise.all(t.parts.map((p) => p.read().data() as Promise<Float32Array>));
    if (parts.length === 1) {
      out.set(name, parts[0]);
      continue;
    }
    const all = new Float32Array(size(t.shape));
    let off = 0;
    for (const d of parts) {
      all.set(d, off);
      off += d.length;
    }
    out.set(name, all);
  }
  return out;
}

/** Writes the whole tensor's values (row-major, t.shape) into its variable(s). */
export function writeTensorData(t: CheckpointTensor, data: Float32Array): void {
  if (data.length !== size(t.shape))
    throw new Error(`expected ${size(t.shape)} values for shape [${t.shape}], got ${data.length}`);
  let off = 0;
  for (const p of t.parts) {
    const n = size(p.shape);
    // subarray: no second host copy of a multi-GB matrix.
    const values = t.parts.length === 1 ? data : data.subarray(off, off + n);
    off += n;
    if (p instanceof CompactParameter) {
      p.writeValues(values); // packed on the host, uploaded packed: float32 never reaches the device
      continue;
    }
    const v = tf.tensor(values, p.shape as number[], 'float32');
    p.write(v);
    v.dispose();
  }
}
