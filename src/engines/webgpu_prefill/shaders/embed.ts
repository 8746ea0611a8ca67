/**
 * The prefill embedding gather: x = E[id] * scale for the chunk's M token rows whose id falls in
 * one piece of the vocabulary matrix (a matrix past the binding limit is held in row pieces: one
 * dispatch each). M comes from `dims`, so one pipeline serves every chunk length.
 *   const code = prefillEmbedSource({D: config.hidden_size, start: 0, rows: config.vocab_size, scale: 50.5});
 *   const grid = prefillEmbedGrid(config.hidden_size, 2048, 65535);   // for M = 2048 token rows
 *
 * Shape letters: M token rows, D hidden size, rows / start the piece's rows and first row.
 */
import {f32} from '../../webgpu_decode/shaders/common';
import {FLOAT32_WEIGHTS, valueFn, valuesPerWord, type WeightFormat} from '../../webgpu_decode/shaders/weights';
import {DIMS, flatGrid, flatIndex} from './dims';

export interface PrefillEmbedSpec {
  D: number;
  start: number;
  rows: number;
  scale: number;
  /** The piece's storage (default float32); compact: words [rows, D / perWord], scales s, zero points z. */
  weights?: WeightFormat;
}

export type PrefillEmbedBinding = 'e' | 's' | 'z' | 'dims' | 'ids' | 'x';

const WG = 256;

/** Workgroups for M token rows. */
export function prefillEmbedGrid(D: number, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * D, WG, maxX);
}

/**
 * Bindings: e (one piece, [rows, D]; compact: its words), [s: int8 [rows] / int4 [rows, G]
 * scales], [z: int4 zero points], dims, ids [M] (u32), x [M, D]. One invocation per output value;
 * rows whose id lies in another piece are left as they are.
 */
export function prefillEmbedSource(s: PrefillEmbedSpec): string {
  const fmt = s.weights ?? FLOAT32_WEIGHTS;
  const {D} = s;
  const k = valuesPerWord(fmt);
  const binds: string[] = [
    `var<storage, read> e : array<${fmt.dtype === 'float32' ? 'f32' : 'u32'}>;`,
    ...(fmt.dtype === 'int8' || fmt.dtype === 'int4' ? ['var<storage, read> s : array<f32>;'] : []),
    ...(fmt.zeroPoints ? ['var<storage, read> z : array<f32>;'] : []),
    'var<storage, read> dims : array<u32>;',
    'var<storage, read> ids : array<u32>;',
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

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
        @builtin(local_invocation_index) lid : u32) {
  let idx = ${flatIndex('wid', 'nwg', 'lid', WG)};
  if (idx >= dims[${DIMS.M}u] * ${D}u) { return; }
  let i = idx / ${D}u;
  let j = idx % ${D}u;
  let id = i32(ids[i]) - ${s.start};
  if (id >= 0 && id < ${s.rows}) {
    let row = u32(id);
    x[idx] = ${value} * ${f32(s.scale)};
  }
}`;
}
