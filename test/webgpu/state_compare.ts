/**
 * Comparing a state across backends in the fused engine tests: every tensor of a state read back
 * (the layers exported from an engine if they live there), and the worst relative error of two such
 * lists.
 *   const worst = worstOf(await stateArrays(gpuState), await stateArrays(cpuState));   // < 1e-5
 */
import type {LayerState} from '../../layers/model_layers';
import type {GenerationState} from '../../src/generation/state';
import type {tf} from '../../src/tf';
import {relError} from '../helpers';

/** Every tensor of the layer states, in order, read back. */
export async function layerArrays(layers: LayerState[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const l of layers) {
    for (const t of Object.values(l as unknown as Record<string, tf.Tensor>)) {
      out.push(Float32Array.from((await t.data()) as Float32Array));
    }
  }
  return out;
}

/** A state's layers and then its logits, read back. */
export async function stateArrays(s: GenerationState): Promise<Float32Array[]> {
  const out = await layerArrays(s.layers as LayerState[]);
  out.push(Float32Array.from((await s.logits.data()) as Float32Array));
  return out;
}

/** The largest relError over pairs of arrays (0 for a pair both all zero). */
export function worstOf(a: Float32Array[], b: Float32Array[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => (x.every((v) => v === 0) && b[i].every((v) => v === 0) ? 0 : relError(x, b[i]))));
}
