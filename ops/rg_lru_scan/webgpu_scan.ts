/**
 * The linear recurrence under both RgLruScan webgpu kernels (webgpu.ts): s = coef * s + x over
 * time from an initial state, forward for h, reversed for the backward pass's g. One invocation
 * per (batch, channel) walks all of time; for long sequences a three-pass chunked scan splits
 * time across invocations too.
 *   const h = runScan(backend, a, x, h0, b, t, e, false);   // [b, t, e]; reverse: true for g
 *
 * Shape letters: b batch, t time steps, e channels, n chunks of `chunk` steps (the last may be
 * shorter). In WGSL: T, E, N the same sizes, bi the batch row, c the channel, k the chunk,
 * [t0, t1) the steps an invocation walks.
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import {splitIndex, WebGPUProgramBase} from '../webgpu_program';

/**
 * Path selection; tests set these to force either path. chunkSize 0 picks one from t;
 * 'auto' takes the chunked path once t >= 2 * chunkSize.
 */
export const rgLruScanWebGPUConfig = {
  chunkSize: 0,
  path: 'auto' as 'auto' | 'serial' | 'chunked',
};

/** The plan for a sequence of t steps: chunk size, or 0 for the serial path. */
export function scanPlan(t: number): {chunk: number; numChunks: number} {
  const {chunkSize, path} = rgLruScanWebGPUConfig;
  // ~sqrt(t) balances the serial carry pass (t/C steps) against the per-chunk passes (C steps).
  const chunk =
    chunkSize > 0 ? chunkSize : Math.min(256, Math.max(64, 2 ** Math.round(Math.log2(Math.sqrt(Math.max(t, 1))))));
  const chunked = path === 'chunked' || (path === 'auto' && t >= 2 * chunk);
  return chunked ? {chunk, numChunks: Math.ceil(t / chunk)} : {chunk: 0, numChunks: 1};
}

/**
 * The two recurrences differ only in direction and in which `a` multiplies the state:
 *   forward  s = a[t] * s + x[t],    t = 0 .. T-1
 *   reverse  s = a[t+1] * s + x[t],  t = T-1 .. 0, with a[T] = 1 (the backward pass's g)
 * In reverse the coefficient of step t is the `a` read on the previous iteration, so each
 * loop reads a once per step either way. The snippets below walk one channel through
 * [t0, t1) with `i` the flat index of the first step visited.
 */
function stepLoop(reverse: boolean, body: string): string {
  if (!reverse) {
    return `
      var i = (bi * T + t0) * E + c;
      for (var tt = t0; tt < t1; tt++) {
        let coef = a[i];
        ${body}
        i += E;
      }`;
  }
  return `
      var i = (bi * T + t1 - 1) * E + c;
      var coef = 1.0;
      if (t1 < T) { coef = a[i + E]; }
      for (var tt = t1 - 1; tt >= t0; tt--) {
        ${body}
        coef = a[i];
        i -= E;
      }`;
}

/** WGSL opening `main(index)` with one invocation per (bi, c) of input `x` [b, t, e]: T, E, the bound, bi and c. */
export function perChannelWgsl(x: string): string {
  return `let T = uniforms.${x}Shape.y;
        let E = uniforms.${x}Shape.z;
        if (index >= uniforms.${x}Shape.x * E) { return; }
        ${splitIndex('index', 'bi', 'c', 'E')}`;
}

/** The same per (bi, k, c) of a [b, t, e] and N chunks (the expression `N`): [t0, t1) chunk k's steps. */
function perChunkWgsl(N: string): string {
  return `let T = uniforms.aShape.y;
        let E = uniforms.aShape.z;
        let N = ${N};
        if (index >= uniforms.aShape.x * N * E) { return; }
        ${splitIndex('index', 'row', 'c', 'E')}
        ${splitIndex('row', 'bi', 'k', 'N')}
        let t0 = k * uniforms.chunk;
        let t1 = min(t0 + uniforms.chunk, T);`;
}

/** Serial path: one invocation per (b, c) walks all of time. Inputs a, x [b, t, e], s0 [b, e]. */
class ScanSerialProgram extends WebGPUProgramBase {
  constructor(
    b: number,
    t: number,
    e: number,
    private reverse: boolean,
  ) {
    super({
      name: 'rgLruScanSerial',
      variant: [reverse],
      inputs: ['a', 'x', 's0'],
      outputShape: [b, t, e],
      invocations: b * e,
    });
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        ${perChannelWgsl('a')}
        let t0 = 0;
        let t1 = T;
        var s = s0[index];
        ${stepLoop(this.reverse, 's = coef * s + x[i]; result[i] = s;')}
      }`;
  }
}

/**
 * Chunked pass 1: per (b, chunk, c) the chunk's scan from a zero state and the product of its
 * coefficients, so that state_out = prod * state_in + local. Output [2, b, n, e]: locals, then
 * products.
 */
class ChunkSummaryProgram extends WebGPUProgramBase {
  constructor(
    b: number,
    n: number,
    e: number,
    private reverse: boolean,
  ) {
    super({
      name: 'rgLruChunkSummary',
      variant: [reverse],
      inputs: ['a', 'x'],
      outputShape: [2, b, n, e],
      invocations: b * n * e,
      uniforms: 'chunk : i32,',
    });
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        ${perChunkWgsl('uniforms.outShape.z')}
        let plane = uniforms.aShape.x * N * E;
        var s = 0.0;
        var p = 1.0;
        ${stepLoop(this.reverse, 's = coef * s + x[i]; p = p * coef;')}
        result[index] = s;
        result[plane + index] = p;
      }`;
  }
}

/**
 * Chunked pass 2: per (b, c), runs the chunk summaries in order from the initial state and
 * writes the state entering each chunk. Inputs summary [2, b, n, e], s0 [b, e]; output [b, n, e].
 */
class ChunkCarryProgram extends WebGPUProgramBase {
  constructor(
    b: number,
    n: number,
    e: number,
    private reverse: boolean,
  ) {
    super({
      name: 'rgLruChunkCarry',
      variant: [reverse],
      inputs: ['summary', 's0'],
      outputShape: [b, n, e],
      invocations: b * e,
    });
  }

  getUserCode(): string {
    const loop = this.reverse ? 'for (var k = N - 1; k >= 0; k--) {' : 'for (var k = 0; k < N; k++) {';
    return `
      fn main(index : i32) {
        let B = uniforms.s0Shape.x;
        let E = uniforms.s0Shape.y;
        let N = uniforms.outShape.y;
        if (index >= B * E) { return; }
        ${splitIndex('index', 'bi', 'c', 'E')}
        let plane = B * N * E;
        var s = s0[index];
        ${loop}
          let j = (bi * N + k) * E + c;
          result[j] = s;
          s = summary[plane + j] * s + summary[j];
        }
      }`;
  }
}

/**
 * Chunked pass 3: per (b, chunk, c), rescans the chunk from its carried-in state, writing the
 * output. Inputs a, x [b, t, e], carry [b, n, e]; output [b, t, e].
 */
class ChunkApplyProgram extends WebGPUProgramBase {
  constructor(
    b: number,
    t: number,
    e: number,
    n: number,
    private reverse: boolean,
  ) {
    super({
      name: 'rgLruChunkApply',
      variant: [reverse],
      inputs: ['a', 'x', 'carry'],
      outputShape: [b, t, e],
      invocations: b * n * e,
      uniforms: 'chunk : i32,',
    });
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        ${perChunkWgsl('uniforms.carryShape.y')}
        var s = carry[index];
        ${stepLoop(this.reverse, 's = coef * s + x[i]; result[i] = s;')}
      }`;
  }
}

/** The scan over time of coef * s + x from s0, forward or reversed (see stepLoop); t >= 1. */
export function runScan(
  backend: WebGPUBackend,
  a: TensorInfo,
  x: TensorInfo,
  s0: TensorInfo,
  b: number,
  t: number,
  e: number,
  reverse: boolean,
): TensorInfo {
  const {chunk, numChunks} = scanPlan(t);
  if (chunk === 0) {
    return backend.runWebGPUProgram(new ScanSerialProgram(b, t, e, reverse), [a, x, s0], 'float32');
  }
  const chunkUniform = [{type: 'int32', data: [chunk]}];
  const summary = backend.runWebGPUProgram(
    new ChunkSummaryProgram(b, numChunks, e, reverse),
    [a, x],
    'float32',
    chunkUniform,
  );
  const carry = backend.runWebGPUProgram(new ChunkCarryProgram(b, numChunks, e, reverse), [summary, s0], 'float32');
  const out = backend.runWebGPUProgram(
    new ChunkApplyProgram(b, t, e, numChunks, reverse),
    [a, x, carry],
    'float32',
    chunkUniform,
  );
  // Safe while the GPU work is still queued: the backend defers the release.
  backend.disposeData(summary.dataId);
  backend.disposeData(carry.dataId);
  return out;
}
