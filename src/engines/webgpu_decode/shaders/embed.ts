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
import {FLOAT32_WEIGHTS, valueFn, valuesPerWord, type WeightFormat} from './weights';

export interface EmbedSpec {
  B: number;
  D: number;
  start: number;
  rows: number;
  scale: number;
  step: StepLayout;
  /** The piece's storage (default float32); compact: words [rows, D / perWord], scales s, zero points z. */
  weights?: WeightFormat;
}

export type EmbedBinding = 'e' | 's' | 'z' | 'step' | 'x';

/**
 * Bindings: e (one piece, [rows, D]; compact: its words), [s: int8 [rows] / int4 [rows, G]
 * scales], [z: int4 zero points], step, x [B, D]. One thread per output value.
 */
export function embedSource(s: EmbedSpec): string {
  const fmt = s.weights ?? FLOAT32_WEIGHTS;
  const {B, D} = s;
  const k = valuesPerWord(fmt);
  const binds: string[] = [
    `var<storage, read> e : array<${fmt.dtype === 'float32' ? 'f32' : 'u32'}>;`,
    ...(fmt.dtype === 'int8' || fmt.dtype === 'int4' ? ['var<storage, read> s : array<f32>;'] : []),
    ...(fmt.zeroPoints ? ['var<storage, read> z : array<f32>;'] : []),
    'var<storage, read> step : array<u32>;',
    'var<storage, read_write> x : array<f32>;',
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
  return `
${fmt.dtype === 'float32' ? '' : valueFn(fmt, 'stored')}
${binds.map((b, i) => `@group(0) @binding(${i}) ${b}`).join('\n')}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let idx = gid.x;
  if (idx >= ${B * D}u) { return; }
  let b = idx / ${D}u;
  let j = idx % ${D}u;
  let id = i32(step[${s.step.ids}u + b]) - ${s.start};
  if (id >= 0 && id < ${s.rows}) {
    let row = u32(id);
    x[idx] = ${value} * ${f32(s.scale)};
  }
}`;
}
