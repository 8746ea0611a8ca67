/**
 * The embedding kernel: x = E[id] * scale for the rows whose id falls in one piece of the
 * vocabulary matrix (a matrix past the binding limit is held in row pieces: one dispatch each).
 *   import {stepLayout} from './common';
 *   const step = stepLayout(1, config.rotary_dim / 2);
 *   const code = embedSource({B: 1, D: config.hidden_size, start: 0, rows: V, scale: model.embed.scale, step});
 *
 * Shape letters: B batch rows, D hidden size, rows / start the piece's rows and first row.
 */
import {f32, StepLayout} from './common';

export interface EmbedSpec {
  B: number;
  D: number;
  start: number;
  rows: number;
  scale: number;
  step: StepLayout;
}

export type EmbedBinding = 'e' | 'step' | 'x';

/** Bindings: e (one piece, [rows, D]), step, x [B, D]. One thread per output value. */
export function embedSource(s: EmbedSpec): string {
  return `
@group(0) @binding(0) var<storage, read> e : array<f32>;
@group(0) @binding(1) var<storage, read> step : array<u32>;
@group(0) @binding(2) var<storage, read_write> x : array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let idx = gid.x;
  if (idx >= ${s.B * s.D}u) { return; }
  let b = idx / ${s.D}u;
  let j = idx % ${s.D}u;
  let id = i32(step[${s.step.ids}u + b]) - ${s.start};
  if (id >= 0 && id < ${s.rows}) { x[idx] = e[u32(id) * ${s.D}u + j] * ${f32(s.scale)}; }
}`;
}
