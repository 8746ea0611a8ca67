/**
 * A [V, d] vocabulary matrix held as row pieces when one buffer of V*d*4 bytes would exceed what
 * the device can bind (webgpu: 2 GiB under Dawn, 128 MiB - 1 GiB in browsers; RecurrentGemma-2B's
 * embedding is 256000 x 2560 float32 = 2.6 GB). Used by Embedding and LMHead.
 *   const param = (leaf: string, shape: number[]) => new tf.LayerVariable(tf.zeros(shape), 'float32', leaf);
 *   const m = VocabMatrix.create(V, d, 'weight', param);   // in a layer: (leaf, shape) => this.param(leaf, shape, std)
 *   const rows = m.lookup(ids);  const logits = m.project(hidden2d);   // same results split or not
 *
 * The piece size limit: `vocabSplit.maxPieceBytes` if set, else env GRIFFIN_MAX_PIECE_BYTES,
 * else on webgpu the device's min(maxStorageBufferBindingSize, maxBufferSize), else no limit.
 * It is read when the layer builds (creates its variables) and is not saved with the model:
 * a checkpoint holds the whole matrix under its one name (converters/hf.ts checkpointTensors).
 */
import * as tf from '@tensorflow/tfjs';
import {compactGatherRows} from '../ops/compact/index';
import type {LayerVariable} from './base';
import {CompactParameter} from './compact';

/** Process-wide override of the piece size limit in bytes (tests); 0 = default. */
export const vocabSplit = {maxPieceBytes: 0};

/** The piece size limit in bytes now (see the module header); Infinity = never split. */
export function maxPieceBytes(): number {
  if (vocabSplit.maxPieceBytes > 0) return vocabSplit.maxPieceBytes;
  const env = typeof process !== 'undefined' ? process.env?.GRIFFIN_MAX_PIECE_BYTES : undefined;
  if (env != null && env !== '') {
    const n = Number(env);
    if (!(n > 0))
      throw new Error(`GRIFFIN_MAX_PIECE_BYTES must be a positive number of bytes, got ${JSON.stringify(env)}`);
    return n;
  }
  if (tf.getBackend() === 'webgpu') {
    // Only the shape of the backend is used: importing tfjs-backend-webgpu registers it.
    const limits = (tf.backend() as unknown as {device?: {limits?: Record<string, number>}}).device?.limits;
    if (limits != null)
      return Math.min(limits.maxStorageBufferBindingSize ?? Infinity, limits.maxBufferSize ?? Infinity);
  }
  return Infinity;
}

/** Rows per piece: the fewest pieces under the limit, of near-equal size (rows of `rowBytes`: float32 by default). */
export function pieceRows(V: number, d: number, limitBytes = maxPieceBytes(), rowBytes = d * 4): number[] {
  const maxRows = Math.floor(limitBytes / rowBytes);
  if (maxRows >= V) return [V];
  if (maxRows < 1) throw new Error(`a piece of at most ${limitBytes} bytes cannot hold one row of ${d} float32`);
  const n = Math.ceil(V / maxRows);
  const base = Math.floor(V / n),
    extra = V % n;
  return Array.from({length: n}, (_, k) => base + (k < extra ? 1 : 0));
}

/** One piece: rows [start, start + rows) of the matrix. */
export interface VocabPiece {
  variable: LayerVariable;
  start: number;
  rows: number;
}

/** Suffix of piece k's parameter path ('weight' -> 'weight.piece0'); an unsplit matrix has none. */
export const PIECE_SUFFIX = '.piece';

export class VocabMatrix {
  private constructor(
    readonly V: number,
    readonly d: number,
    readonly pieces: VocabPiece[],
  ) {}

  /**
   * Creates the variables through `param(leaf, shape)`: one named `leaf`, or, past the limit,
   * `leaf.piece0`, `leaf.piece1`, ... holding consecutive rows.
   */
  static create(
    V: number,
    d: number,
    leaf: string,
    param: (leaf: string, shape: number[]) => LayerVariable,
    limitBytes = maxPieceBytes(),
    rowBytes = d * 4,
  ): VocabMatrix {
    const rows = pieceRows(V, d, limitBytes, rowBytes);
    if (rows.length === 1) return new VocabMatrix(V, d, [{variable: param(leaf, [V, d]), start: 0, rows: V}]);
    let start = 0;
    const pieces = rows.map((r, k) => {
      const p = {variable: param(`${leaf}${PIECE_SUFFIX}${k}`, [r, d]), start, rows: r};
      start += r;
      return p;
    });
    return new VocabMatrix(V, d, pieces);
  }

  get split(): boolean {
    return this.pieces.length > 1;
  }

  /** ids (int32, any shape) -> rows [..., d]. */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const idx = tf.cast(ids, 'int32');
      if (!this.split) return gatherRows(this.pieces[0].variable, idx);
      // Each id lies in exactly one piece: gather every piece at the id shifted into it (0 where
      // it lies elsewhere, as a lookup must stay in range), zero the rows of the other pieces,
      // and add. Adding exact zeros changes nothing, so this equals the one-matrix lookup, and
      // so do the gradients (the zeroed rows scatter exact zeros into row 0 of a piece).
      let sum: tf.Tensor | null = null;
      for (const p of this.pieces) {
        const local = tf.sub(idx, tf.scalar(p.start, 'int32'));
        const inside = tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, p.rows));
        const rows = gatherRows(p.variable, tf.where(inside, local, tf.zerosLike(local)));
        const part = tf.mul(rows, tf.expandDims(tf.cast(inside, 'float32'), -1));
        sum = sum == null ? part : tf.add(sum, part);
      }
      return sum!;
    });
  }

  /** x [n, d] -> x W^T [n, V], piece by piece, concatenated. */
  project(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const parts = this.pieces.map((p) =>
        p.variable instanceof CompactParameter ? p.variable.matMulT(x) : tf.matMul(x, p.variable.read(), false, true),
      );
      return parts.length === 1 ? parts[0] : tf.concat(parts, 1);
    });
  }
}

/** Rows idx (int32, any shape) of a piece: [..., d]; a compact piece unpacks only those rows. */
function gatherRows(v: LayerVariable, idx: tf.Tensor): tf.Tensor {
  if (!(v instanceof CompactParameter)) return tf.gather(v.read(), idx);
  const rows = compactGatherRows(v.packed, tf.reshape(idx, [-1]));
  return tf.reshape(rows, [...idx.shape, v.shape[1] as number]);
}
