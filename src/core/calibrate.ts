/**
 * What each weight matrix sees on calibration text: the mean second moments H = mean x x^T of
 * every Linear's input and of the tied (or untied) LM head's input, the final norm's output, from
 * a float32 forward pass. GPTQ (ops/compact/gptq.ts) fits int4 weights to them.
 *   const h = secondMoments(model, [{ids: [2, 17, 9], pos: [0, 1, 2]}], 8);   // Map weight name -> Float64Array [C * C]
 *   calibrateInto(other, model, [{ids: [2, 17, 9], pos: [0, 1, 2]}]);          // other: int4, fitted to model's inputs
 *
 * Keys are the weights' Hugging Face names (`model.layers.0.mlp_block.up_proj.weight`,
 * `model.embed_tokens.weight` for the tied head). Shape letters: n tokens, C a matrix's input width.
 */
import * as tf from '@tensorflow/tfjs';
import type {LinearAdapter} from '../../layers/basic';
import {CompactParameter} from '../../layers/compact';
import {linearModules} from '../../layers/lora';
import {type CompactSpec, type PackedMatrix, quantize} from '../../ops/compact/format';
import {quantizeGptq} from '../../ops/compact/gptq';
import type {CausalLMCore} from './model';

/** Rows per forward pass of the calibration (fromPretrained's and convert's alike, so both sum the same way). */
export const CALIBRATION_BATCH = 8;

/** One calibration row: token ids and their positions (restarting at each BOS). */
export interface CalibrationRow {
  ids: number[];
  pos: number[];
}

/** Adds x^T x of x [..., C] into acc [C * C] (float64 on the host). */
function accumulate(acc: Float64Array, x: tf.Tensor): number {
  const C = x.shape[x.shape.length - 1] as number;
  const xtx = tf.tidy(() => {
    const m = tf.reshape(x, [-1, C]);
    return tf.matMul(m, m, true, false);
  });
  const v = xtx.dataSync();
  xtx.dispose();
  for (let i = 0; i < v.length; i++) acc[i] += v[i];
  return x.size / C;
}

/**
 * Runs the rows through the model, `batch` at a time, and returns mean x x^T per weight matrix.
 * The model must hold float32 weights (what the calibration measures is the unrounded model).
 * `onRows` hears the rows done after each pass.
 */
export function secondMoments(
  model: CausalLMCore,
  rows: CalibrationRow[],
  batch: number,
  onRows?: (done: number, total: number) => void,
): Map<string, Float64Array> {
  if (model.compact != null) throw new Error('calibration needs the float32 model');
  if (rows.length === 0) throw new Error('calibration needs at least one row of tokens');
  const sums = new Map<string, {acc: Float64Array; n: number}>();
  const add = (name: string, x: tf.Tensor) => {
    const C = x.shape[x.shape.length - 1] as number;
    let s = sums.get(name);
    if (s == null) {
      s = {acc: new Float64Array(C * C), n: 0};
      sums.set(name, s);
    }
    s.n += accumulate(s.acc, x);
  };
  const linears = linearModules(model);
  const saved = new Map<string, LinearAdapter | null>();
  try {
    for (const [name, l] of linears) {
      saved.set(name, l.adapter);
      l.adapter = {
        apply: (x, y) => {
          add(`${name}.weight`, x);
          return y;
        },
      };
    }
    const head = tiedLookup(model) ?? `${model.lmHead!.name}.weight`;
    for (let i = 0; i < rows.length; i += batch) {
      const part = rows.slice(i, i + batch);
      const out = model.forward({
        inputIds: part.map((r) => r.ids),
        positionIds: part.map((r) => r.pos),
        outputHiddenStates: true,
      });
      const hidden = out.hiddenStates!;
      add(head, hidden[hidden.length - 1]);
      tf.dispose([out.logits, ...hidden]);
      onRows?.(i + part.length, rows.length);
    }
  } finally {
    for (const [name, l] of linears) l.adapter = saved.get(name) ?? null;
  }
  const out = new Map<string, Float64Array>();
  for (const [name, {acc, n}] of sums) {
    for (let i = 0; i < acc.length; i++) acc[i] /= n;
    out.set(name, acc);
  }
  return out;
}

/**
 * A matrix packed for `spec`: int4 with second moments `h` [C * C] by GPTQ (stored column order), else the
 * data-free fit. `lookups`: the matrix is also the tied embedding, whose looked-up rows count
 * every value alike, so H gets its mean diagonal added (the identity's share of the objective).
 */
export function fitCalibrated(
  values: Float32Array,
  rows: number,
  cols: number,
  spec: CompactSpec,
  h: Float64Array | undefined,
  lookups = false,
): PackedMatrix {
  if (spec.dtype !== 'int4' || h == null) return quantize(values, rows, cols, spec);
  let target = h;
  if (lookups) {
    let mean = 0;
    for (let i = 0; i < cols; i++) mean += h[i * cols + i] / cols;
    target = Float64Array.from(h);
    for (let i = 0; i < cols; i++) target[i * cols + i] += mean;
  }
  return quantizeGptq(values, rows, cols, target, spec);
}

/** The weight that serves the embedding's lookups besides the logits (a tied head's), or null when untied. */
export function tiedLookup(model: CausalLMCore): string | null {
  return model.lmHead == null ? `${model.embed.name}.weight` : null;
}

/**
 * Fills `compact` (a model holding compact matrices, built with zeros) from the float32 `source`
 * of the same config: int4 matrices fitted to the source's second moments on `rows`, every other
 * weight copied. Returns the calibration tokens used.
 */
export function calibrateInto(
  compact: CausalLMCore,
  source: CausalLMCore,
  rows: CalibrationRow[],
  batch = CALIBRATION_BATCH,
): number {
  const hs = secondMoments(source, rows, batch);
  const from = source.namedParameters();
  const tied = tiedLookup(source);
  for (const [name, v] of compact.namedParameters()) {
    const src = from.get(name);
    if (src == null) throw new Error(`calibration: the float32 model has no ${name}`);
    if (v instanceof CompactParameter) {
      const [R, C] = v.shape as number[];
      const values = src.read().dataSync() as Float32Array;
      v.writePacked(fitCalibrated(values, R, C, v.spec, hs.get(name), name === tied));
    } else {
      tf.tidy(() => {
        v.write(src.read());
      });
    }
  }
  return rows.length * rows[0].ids.length;
}
