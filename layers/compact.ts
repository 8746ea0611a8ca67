/**
 * A weight held compact: a [rows, cols] matrix packed in 16, 8 or 4 bits (ops/compact/format.ts)
 * that stands where a float32 LayerVariable would, so names, shapes, checkpoint I/O and parameter
 * counts see the matrix they expect. It is never trainable (LoRA trains beside it); `read()`
 * unpacks the whole matrix (for saving), the layers multiply by the packed words directly.
 *   const w = new CompactParameter('mlp.down_proj.weight', [2560, 7680], {dtype: 'int8'});
 *   w.writeValues(data);                 // quantizes float32 [rows * cols] values
 *   const y = w.matMulT(x);              // x [n, cols] -> [n, rows]: what Linear does (ops/compact)
 *
 * Shape letters: R rows (output features or vocabulary), C cols (input features or hidden size).
 */
import * as tf from '@tensorflow/tfjs';

// The class itself, for subclassing (the union package re-exports tfjs-layers' index).
const {LayerVariable} = tf as unknown as {LayerVariable: typeof import('@tensorflow/tfjs-layers').LayerVariable};

import {type CompactSpec, checkSpec, type PackedMatrix, packedBytes, perWord, quantize} from '../ops/compact/format';
import {
  type CompactTensors,
  compactGatherRows,
  compactMatMul,
  compactTensors,
  disposeCompact,
} from '../ops/compact/index';

export type {CompactSpec};

export class CompactParameter extends LayerVariable {
  readonly spec: CompactSpec;
  private packed_: CompactTensors;

  /** A matrix of zeros (packed words of zero with zero scales), nothing allocated on the host. */
  constructor(name: string, shape: readonly number[], spec: CompactSpec) {
    const placeholder = tf.zeros([1]);
    super(placeholder, 'float32', name, false);
    placeholder.dispose(); // the variable keeps its own handle on the data
    const [R, C] = shape;
    if (shape.length !== 2) throw new Error(`${name}: compact weights are matrices, got shape [${shape}]`);
    const groupSize = checkSpec(spec, R, C, name);
    Object.defineProperty(this, 'shape', {value: [R, C], enumerable: true});
    this.spec = spec;
    const int4 = spec.dtype === 'int4';
    this.packed_ = {
      dtype: spec.dtype,
      rows: R,
      cols: C,
      groupSize,
      data: tf.keep(tf.zeros([R, C / perWord(spec.dtype)], 'int32')),
      scales: tf.keep(spec.dtype === 'int8' ? tf.zeros([R]) : int4 ? tf.zeros([R, C / groupSize]) : tf.zeros([1])),
      zeros: tf.keep(int4 && spec.zeroPoints ? tf.zeros([R, C / groupSize]) : tf.zeros([1])),
      zeroPoints: int4 && spec.zeroPoints === true,
    };
  }

  /** The packed tensors the kernels read. */
  get packed(): CompactTensors {
    return this.packed_;
  }

  /** Bytes the packed matrix takes on the backend. */
  get byteSize(): number {
    const [R, C] = this.shape as number[];
    return packedBytes(this.spec.dtype, R, C, this.packed_.groupSize || 64, this.packed_.zeroPoints);
  }

  /** Never trainable: an optimizer would have nothing to update. Setting it is ignored. */
  override get trainable(): boolean {
    return false;
  }
  override set trainable(_: boolean) {}

  /** Quantizes row-major float32 values [R * C] into the packed matrix. */
  writeValues(values: Float32Array): void {
    const [R, C] = this.shape as number[];
    this.writePacked(quantize(values, R, C, this.spec));
  }

  /** Takes a matrix already packed in this parameter's spec and shape (as stored, bit for bit). */
  writePacked(p: PackedMatrix): void {
    const [R, C] = this.shape as number[];
    const groupOk = p.dtype !== 'int4' || p.groupSize === (this.spec.groupSize ?? 64);
    if (p.rows !== R || p.cols !== C || p.dtype !== this.spec.dtype || !groupOk) {
      throw new Error(
        `${this.name}: packed ${p.dtype} [${p.rows}, ${p.cols}] does not match ${this.spec.dtype} [${R}, ${C}]`,
      );
    }
    if ((p.zeros != null) !== (this.spec.zeroPoints === true)) {
      throw new Error(`${this.name}: zero points ${p.zeros != null ? 'given' : 'missing'}`);
    }
    const next = compactTensors(p);
    // Kept: a caller's tidy must not take the weight with it.
    for (const t of [next.data, next.scales, next.zeros]) tf.keep(t);
    disposeCompact(this.packed_);
    this.packed_ = next;
  }

  /** The whole matrix unpacked, float32 [R, C] (for saving; the layers never need it). */
  override read(): tf.Tensor {
    const [R, C] = this.shape as number[];
    return tf.tidy(() => tf.reshape(compactGatherRows(this.packed_, tf.range(0, R, 1, 'int32')), [R, C]));
  }

  /** Quantizes a float32 [R, C] tensor in (a synchronous read: host backends). */
  override write(t: tf.Tensor): this {
    if (t.shape.join() !== this.shape.join())
      throw new Error(`${this.name}: shape [${t.shape}], expected [${this.shape}]`);
    this.writeValues(t.dataSync() as Float32Array);
    return this;
  }

  /** x [n, C] -> x W^T [n, R]. */
  matMulT(x: tf.Tensor): tf.Tensor {
    return compactMatMul(x, this.packed_);
  }

  override dispose(): void {
    disposeCompact(this.packed_);
    super.dispose();
  }
}
