/// <reference types="@webgpu/types" />
/**
 * forward / predict on the fused prefill engine (webgpu): the whole model over [b, t] ids as the
 * engine's chunks, every position's logits from its all-rows head (or only the last with
 * lastPositionOnly), a state passed in imported into the decode engine first and the state after
 * it exported on request, the loss from those logits. null when the engine cannot honour the
 * inputs as tfjs ops would: the caller then runs tfjs ops (src/model.ts does).
 *   const out = fusedForward(model, {inputIds: [[2, 651, 3]]});   // {logits: [1, 3, V]} or null
 *
 * It applies where fused prefill does (fusedPrefillFor: webgpu, no LoRA, 1..32 rows) with
 * fusedForwardEnabled() (env GRIFFIN_FUSED_FORWARD), and not when gradients are being recorded
 * (the engine's tensors have none), with gradientCheckpointing or outputHiddenStates, padding (a 0
 * in attentionMask), position ids that neither count up by one nor restart at 0, ids outside the
 * vocabulary, a state with some layers null, or inputs of the wrong shape (tfjs ops give the error).
 * Logits past the device's largest buffer are refused with a one-line error.
 *
 * Shape letters: b batch rows, t steps, V vocab_size.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerState} from '../../../layers/model_layers';
import {causalLMLoss} from '../../../ops/loss';
import type {ForwardInputs, ForwardOutputs} from '../../core/model';
import {type IdsLike, idRows, idTensor} from '../../util/ids';
import type {DecodeModelView} from '../webgpu_decode';
import {newGpuTensor, webgpuBackend} from '../webgpu_decode/tfjs_webgpu';
import {fusedForwardEnabled} from './config';
import {fusedPrefillFor} from './index';

/** Rows of ids, or null where they are not a [b, t] of integers (tfjs ops then say why). */
function rowsOf(v: IdsLike, name: string): number[][] | null {
  try {
    return idRows(v, name);
  } catch {
    return null;
  }
}

/** Whether each row's positions are integers >= 0 that count up by one or restart at 0 (what the engine takes). */
function countsUp(pos: number[][]): boolean {
  return pos.every((r) => r.every((p, j) => p >= 0 && (j === 0 || p === 0 || p === r[j - 1] + 1)));
}

/** Whether tfjs's recording gradients now (inside tf.grad, variableGrads, minimize). */
function recordingGradients(): boolean {
  return (tf.engine().state as unknown as {gradientDepth: number}).gradientDepth > 0;
}

/** The forward pass on the fused engine, or null where tfjs ops must run it (see the header). */
export function fusedForward(model: DecodeModelView, inputs: ForwardInputs): ForwardOutputs | null {
  if (!fusedForwardEnabled() || tf.getBackend() !== 'webgpu') return null;
  if (inputs.gradientCheckpointing || inputs.outputHiddenStates || recordingGradients()) return null;
  if (inputs.labels != null && inputs.lastPositionOnly) return null;
  const V = model.config.vocab_size;
  const ids = rowsOf(inputs.inputIds, 'inputIds');
  if (ids == null) return null;
  const b = ids.length,
    t = ids[0].length;
  if (!ids.every((r) => r.every((x) => x >= 0 && x < V))) return null;
  const shaped = (v: IdsLike | null | undefined, name: string) => {
    if (v == null) return undefined;
    const r = rowsOf(v, name);
    return r != null && r.length === b && r[0].length === t ? r : null;
  };
  const mask = shaped(inputs.attentionMask, 'attentionMask');
  if (mask === null || (mask != null && !mask.every((r) => r.every((x) => x === 1)))) return null;
  const pos = shaped(inputs.positionIds, 'positionIds') ?? ids.map(() => Array.from({length: t}, (_, j) => j));
  if (pos === null || !countsUp(pos)) return null;
  if (inputs.labels != null && shaped(inputs.labels, 'labels') == null) return null;
  const st = inputs.state;
  if (st != null && (st.length !== model.blocks.length || (st.some((s) => s == null) && !st.every((s) => s == null))))
    return null;
  const prev = st?.every((s) => s != null) ? (st as LayerState[]) : null;

  const pre = fusedPrefillFor(model, b, t);
  if (pre == null) return null;
  const dev = pre.device;
  const all = !inputs.lastPositionOnly;
  if (all) {
    const most = Math.min(dev.limits.maxStorageBufferBindingSize, dev.limits.maxBufferSize);
    if (64 * V * 4 > most) return null; // not even one slice of the head binds
    const bytes = b * t * V * 4;
    if (bytes > dev.limits.maxBufferSize) {
      const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
      throw new Error(
        `forward: logits [${b}, ${t}, ${V}] take ${gib(bytes)}, past the device's largest buffer (${gib(dev.limits.maxBufferSize)}); ` +
          'pass lastPositionOnly or fewer tokens per call',
      );
    }
  }

  const dec = pre.decoder;
  // A generation state living in the decode engine takes its layers back first.
  if (dec.owner != null) dec.owner.detachFused();
  if (prev != null) dec.importLayers(prev);
  else {
    const enc = dev.createCommandEncoder();
    dec.clearState(enc);
    dev.queue.submit([enc.finish()]);
  }
  const made: tf.Tensor[] = [];
  try {
    const logits = all ? newGpuTensor(webgpuBackend(), [b, t, V]) : null;
    if (logits != null) made.push(logits.tensor);
    let last: tf.Tensor | null = null;
    const step = Math.min(t, pre.capacity);
    for (let c0 = 0; c0 < t; c0 += step) {
      const c1 = Math.min(t, c0 + step);
      const idsC = ids.map((r) => r.slice(c0, c1));
      const posC = pos.map((r) => r.slice(c0, c1));
      if (logits != null) pre.runAll(idsC, posC, {out: logits.buffer, total: t, start: c0});
      else {
        last = pre.run(idsC, posC, c1 === t);
        if (last != null) made.push(last);
      }
    }
    const out: ForwardOutputs = {logits: logits?.tensor ?? tf.reshape(last!, [b, 1, V])};
    if (last != null) last.dispose();
    made.length = 0;
    made.push(out.logits);
    if (inputs.labels != null) {
      const lab = idTensor(inputs.labels, 'labels');
      try {
        out.loss = causalLMLoss(lab.t, out.logits);
      } finally {
        if (lab.owned) lab.t.dispose();
      }
    }
    if (inputs.returnState) out.state = dec.exportLayers();
    return out;
  } catch (e) {
    tf.dispose(made);
    throw e;
  }
}
