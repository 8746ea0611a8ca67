/**
 * The embedding kernel: x = E[id] * scale for the rows whose id falls in one piece of the
 * vocabulary matrix (a matrix past the binding limit is held in row pieces: one dispatch each).
 * Its gather (bindings, unpacking, the guarded store) is `embedGather`, which the prefill
 * engine's embedding (webgpu_prefill/shaders/embed.ts) shares.
 *   import {stepLayout} from './common';
 *   const step = stepLayout(1, config.rotary_dim / 2);
 *   const code = embedSource({B: 1, D: config.hidden_size, start: 0, rows: V, scale: model.embed.scale, step});
 *
 * Shape letters: B batch rows, D hidden size, rows / start the piece's rows and first row.
 */
import {f32, StepLayout} from './common';
import {FLOAT32_WEIGHTS, valueFn, valuesPerWord, type WeightFormat} from './weights';

/** One piece of the embedding matrix as a gather reads it. */
export interface EmbedPiece {
  D: number;
  start: number;
  rows: number;
  scale: number;
  /** The piece's storage (default float32); compact: words [rows, D / perWord], scales s, zero points z. */
  weights?: WeightFormat;
}

export interface EmbedSpec extends EmbedPiece {
  B: number;
  step: StepLayout;
}

export type EmbedBinding = 'e' | 's' | 'z' | 'step' | 'x';

/**
 * What every embedding kernel shares: `head`, the unpacking function and the bindings e (the
 * piece; compact: its words), [s: int8 [rows] / int4 [rows, G] scales], [z: int4 zero points],
 * then `more` (declarations, numbered after them); and `store(id)`, the statements that write
 * x[idx] = E[id - start][j] * scale when the token id (a WGSL i32 expression) falls in the piece,
 * `idx` and `j` (the output index and its column) being in scope. Other rows are left as they are.
 */
export function embedGather(p: EmbedPiece, more: string[]): {head: string; store: (id: string) => string} {
  const fmt = p.weights ?? FLOAT32_WEIGHTS;
  const {D} = p;
  const k = valuesPerWord(fmt);
  const binds: string[] = [
    `var<storage, read> e : array<${fmt.dtype === 'float32' ? 'f32' : 'u32'}>;`,
    ...(fmt.dtype === 'int8' || fmt.dtype === 'int4' ? ['var<storage, read> s : array<f32>;'] : []),
    ...(fmt.zeroPoints ? ['var<storage, read> z : array<f32>;'] : []),
    ...more,
  ];
  let value: string;
  if (fmt.dtype === 'float32') {
    value = `e[row * ${D}u + j]`;
  } else {
    const G = fmt.dtype === 'int4' ? D / fmt.groupSize : 0;
    const gi = `row * ${G}u + j / ${fmt.groupSize}u`;
    const zp = fmt.dtype === 'int4' ? (fmt.zeroPoints ? `z[${gi}]` : '8.0') : '0.0';
    const scale = fmt.dtype === 'int8' ? ' * s[row]' : fmt.dtype === 'int4' ? ` * s[${gi}]` : '';
    value = `stored(e[row * ${D / k}u + j / ${k}u], j % ${k}u, ${zp})${scale}`;
  }
  const head = `
${fmt.dtype === 'float32' ? '' : valueFn(fmt, 'stored')}
${binds.map((b, i) => `@group(0) @binding(${i}) ${b}`).join('\n')}`;
  const store = (id: string) => `let id = ${id} - ${p.start};
  if (id >= 0 && id < ${p.rows}) {
    let row = u32(id);
    x[idx] = ${value} * ${f32(p.scale)};
  }`;
  return {head, store};
}

/** Bindings: e, [s], [z] (embedGather), step, x [B, D]. One thread per output value. */
export function embedSource(s: EmbedSpec): string {
  const {B, D} = s;
  const g = embedGather(s, ['var<storage, read> step : array<u32>;', 'var<storage, read_write> x : array<f32>;']);
  return `${g.head}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let idx = gid.x;
  if (idx >= ${B * D}u) { return; }
  let b = idx / ${D}u;
  let j = idx % ${D}u;
  ${g.store(`i32(step[${s.step.ids}u + b])`)}
}`;
}
