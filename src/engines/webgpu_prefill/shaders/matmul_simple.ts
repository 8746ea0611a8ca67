/**
 * A plain matmul kernel with the tiled matmul's interface (matmul.ts's MatmulSpec and binding
 * names): one invocation per output value, no tiles, any widths. The prefill plan uses it for
 * the shapes the tiled kernel does not take (widths and strides not multiples of 4).
 *   import {FLOAT32_WEIGHTS} from '../../webgpu_decode/shaders/weights';
 *   const spec: MatmulSpec = {N: 30, K: 30, weight: FLOAT32_WEIGHTS, norm: {eps: 1e-6}, bias: true, epilogue: 'store'};
 *   const code = simpleMatmulSource(spec);   const grid = simpleMatmulGrid(spec, 2048);   // bindings: matmulBindings(spec)
 *
 * y = x W^T (W [N, K], compact formats unpacked per value), the RMSNorm of each x row fused
 * (x rsqrt(mean x^2 + eps) (1 + g)), bias, then the epilogue: store, gelu, residual (out += y),
 * mul (out *= y), geglu (gelu(x W0^T + b0) * (x W1^T + b1)), softcap. blocks: block-diagonal,
 * W [blocks, K, N].
 *
 * Shape letters: M token rows (dims[0]), N outputs, K inputs.
 */
import {COMMON_WGSL, f32} from '../../webgpu_decode/shaders/common';
import {valueFn, valuesPerWord} from '../../webgpu_decode/shaders/weights';
import {DIMS} from './dims';
import {type MatmulSpec, matmulBindings} from './matmul';

export type {MatmulSpec};

const WG = 64;

export function simpleMatmulGrid(s: MatmulSpec, M: number): [number, number, number] {
  return [Math.ceil(s.N / WG), M, s.blocks ?? 1];
}

export function simpleMatmulSource(s: MatmulSpec): string {
  const {N, K} = s;
  const fmt = s.weight;
  const blocks = s.blocks ?? 1;
  if (blocks > 1 && fmt.dtype !== 'float32') throw new Error('matmul: block-diagonal weights are float32');
  const xStride = s.xStride ?? K * blocks,
    xOffset = s.xOffset ?? 0;
  const outStride = s.outStride ?? N * blocks,
    outOffset = s.outOffset ?? 0;
  const names = matmulBindings(s);
  const decl = names.map((n, i) => {
    const type = n === 'dims' || (/^w/.test(n) && fmt.dtype !== 'float32') ? 'u32' : 'f32';
    const access = n === 'out' ? 'read_write' : 'read';
    return `@group(0) @binding(${i}) var<storage, ${access}> ${n} : array<${type}>;`;
  });
  const k = valuesPerWord(fmt);
  const wv = (w: string, sc: string, z: string) => {
    if (blocks > 1) return `${w}[(blk * ${K}u + kk) * ${N}u + n]`;
    if (fmt.dtype === 'float32') return `${w}[n * ${K}u + kk]`;
    const G = fmt.dtype === 'int4' ? K / fmt.groupSize : 0;
    const gi = `n * ${G}u + kk / ${fmt.groupSize}u`;
    const zp = fmt.dtype === 'int4' ? (fmt.zeroPoints ? `${z}[${gi}]` : '8.0') : '0.0';
    const scale = fmt.dtype === 'int4' ? ` * ${sc}[${gi}]` : '';
    return `(stored(${w}[n * ${K / k}u + kk / ${k}u], kk % ${k}u, ${zp})${scale})`;
  };
  const two = s.epilogue === 'geglu';
  const rowScale = (acc: string, sc: string) => (fmt.dtype === 'int8' ? `${acc} * ${sc}[n]` : acc);
  let fin: string;
  const b0 = s.bias ? (blocks > 1 ? ' + bias[blk * N_ + n]' : ' + bias[n]') : '';
  const b1 = s.bias ? ` + bias[${N}u + n]` : '';
  const v0 = `${rowScale('acc0', 's0')}${b0.replace('N_', `${N}u`)}`;
  switch (s.epilogue) {
    case 'store':
      fin = `out[o] = ${v0};`;
      break;
    case 'gelu':
      fin = `out[o] = geluT(${v0});`;
      break;
    case 'residual':
      fin = `out[o] = out[o] + (${v0});`;
      break;
    case 'mul':
      fin = `out[o] = out[o] * (${v0});`;
      break;
    case 'geglu':
      fin = `out[o] = geluT(${v0}) * (${rowScale('acc1', 's1')}${b1});`;
      break;
    case 'softcap': {
      const cap = s.cap ?? 30;
      fin = `out[o] = tanhP((${v0}) / ${f32(cap)}) * ${f32(cap)};`;
      break;
    }
  }
  return `
${COMMON_WGSL}
${fmt.dtype === 'float32' ? '' : valueFn(fmt, 'stored')}
${decl.join('\n')}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let n = gid.x;
  let i = gid.y;
  let blk = gid.z;
  if (n >= ${N}u || i >= dims[${DIMS.M}u]) { return; }
  let xb = i * ${xStride}u + ${xOffset}u + blk * ${K}u;
  var r = 1.0;
  ${
    s.norm
      ? `var ss = 0.0;
  for (var kk = 0u; kk < ${K}u; kk = kk + 1u) { let v = x[xb + kk]; ss = ss + v * v; }
  r = inverseSqrt(ss / ${f32(K)} + ${f32(s.norm.eps)});`
      : ''
  }
  var acc0 = 0.0;
  var acc1 = 0.0;
  for (var kk = 0u; kk < ${K}u; kk = kk + 1u) {
    let xv = ${s.norm ? '(x[xb + kk] * r) * (1.0 + g[kk])' : 'x[xb + kk]'};
    acc0 = acc0 + xv * ${wv('w0', 's0', 'z0')};
    ${two ? `acc1 = acc1 + xv * ${wv('w1', 's1', 'z1')};` : ''}
  }
  let o = i * ${outStride}u + ${outOffset}u + blk * ${N}u + n;
  ${fin}
}`;
}
