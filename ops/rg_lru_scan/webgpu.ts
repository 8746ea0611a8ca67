/**
 * RgLruScan kernels for tfjs-backend-webgpu, in WGSL: one invocation per (batch, channel), and
 * for long sequences a three-pass chunked scan so that time is split across invocations too.
 *   registerWebGPUKernels();    // ops/register_webgpu.ts; initNodeWebGPU() calls it
 *   const {h, hLast} = rgLruScan(a, x, h0);
 *
 * Every program writes one output (the backend binds a single `result` buffer), so a kernel with
 * several outputs runs several programs. Only types are imported from the backend package:
 * importing its code registers the backend, which must wait until navigator.gpu exists.
 */
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD, scanDims} from './kernel_names';

/**
 * Path selection; tests set these to force either path. chunkSize 0 picks one from t;
 * 'auto' takes the chunked path once t >= 2 * chunkSize.
 */
export const rgLruScanWebGPUConfig = {
  chunkSize: 0,
  path: 'auto' as 'auto' | 'serial' | 'chunked',
};

const WORKGROUP: [number, number, number] = [64, 1, 1];

/** The plan for a sequence of t steps: chunk size, or 0 for the serial path. */
export function scanPlan(t: number): {chunk: number, numChunks: number} {
  const {chunkSize, path} = rgLruScanWebGPUConfig;
  // ~sqrt(t) balances the serial carry pass (t/C steps) against the per-chunk passes (C steps).
  const chunk = chunkSize > 0 ? chunkSize :
      Math.min(256, Math.max(64, 2 ** Math.round(Math.log2(Math.sqrt(Math.max(t, 1))))));
  const chunked = path === 'chunked' || (path === 'auto' && t >= 2 * chunk);
  return chunked ? {chunk, numChunks: Math.ceil(t / chunk)} : {chunk: 0, numChunks: 1};
}

function dispatchFor(invocations: number): [number, number, number] {
  // The backend folds an x count above the per-dimension limit into y and z (getGlobalIndex
  // accounts for it), so a flat count is always safe.
  return [Math.max(1, Math.ceil(invocations / WORKGROUP[0])), 1, 1];
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

/** Serial path: one invocation per (b, c) walks all of time. Inputs a, x, s0: [b, e]. */
class ScanSerialProgram implements WebGPUProgram {
  variableNames = ['a', 'x', 's0'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;
  private reverse: boolean;

  constructor(b: number, t: number, e: number, reverse: boolean) {
    this.outputShape = [b, t, e];
    this.dispatchLayout = {x: [0, 1, 2]};
    this.dispatch = dispatchFor(b * e);
    this.reverse = reverse;
    this.shaderKey = `rgLruScanSerial_${reverse}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.aShape.y;
        let E = uniforms.aShape.z;
        if (index >= uniforms.aShape.x * E) { return; }
        let bi = index / E;
        let c = index - bi * E;
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
class ChunkSummaryProgram implements WebGPUProgram {
  variableNames = ['a', 'x'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;
  uniforms = 'chunk : i32,';
  private reverse: boolean;

  constructor(b: number, n: number, e: number, reverse: boolean) {
    this.outputShape = [2, b, n, e];
    this.dispatchLayout = {x: [0, 1, 2, 3]};
    this.dispatch = dispatchFor(b * n * e);
    this.reverse = reverse;
    this.shaderKey = `rgLruChunkSummary_${reverse}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.aShape.y;
        let E = uniforms.aShape.z;
        let N = uniforms.outShape.z;
        let plane = uniforms.aShape.x * N * E;
        if (index >= plane) { return; }
        let row = index / E;
        let c = index - row * E;
        let bi = row / N;
        let k = row - bi * N;
        let t0 = k * uniforms.chunk;
        let t1 = min(t0 + uniforms.chunk, T);
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
class ChunkCarryProgram implements WebGPUProgram {
  variableNames = ['summary', 's0'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;
  private reverse: boolean;

  constructor(b: number, n: number, e: number, reverse: boolean) {
    this.outputShape = [b, n, e];
    this.dispatchLayout = {x: [0, 1, 2]};
    this.dispatch = dispatchFor(b * e);
    this.reverse = reverse;
    this.shaderKey = `rgLruChunkCarry_${reverse}`;
  }

  getUserCode(): string {
    const loop = this.reverse ?
        'for (var k = N - 1; k >= 0; k--) {' : 'for (var k = 0; k < N; k++) {';
    return `
      fn main(index : i32) {
        let B = uniforms.s0Shape.x;
        let E = uniforms.s0Shape.y;
        let N = uniforms.outShape.y;
        if (index >= B * E) { return; }
        let bi = index / E;
        let c = index - bi * E;
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

/** Chunked pass 3: per (b, chunk, c), rescans the chunk from its carried-in state, writing h. */
class ChunkApplyProgram implements WebGPUProgram {
  variableNames = ['a', 'x', 'carry'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;
  uniforms = 'chunk : i32,';
  private reverse: boolean;

  constructor(b: number, t: number, e: number, n: number, reverse: boolean) {
    this.outputShape = [b, t, e];
    this.dispatchLayout = {x: [0, 1, 2]};
    this.dispatch = dispatchFor(b * n * e);
    this.reverse = reverse;
    this.shaderKey = `rgLruChunkApply_${reverse}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.aShape.y;
        let E = uniforms.aShape.z;
        let N = uniforms.carryShape.y;
        if (index >= uniforms.aShape.x * N * E) { return; }
        let row = index / E;
        let c = index - row * E;
        let bi = row / N;
        let k = row - bi * N;
        let t0 = k * uniforms.chunk;
        let t1 = min(t0 + uniforms.chunk, T);
        var s = carry[index];
        ${stepLoop(this.reverse, 's = coef * s + x[i]; result[i] = s;')}
      }`;
  }
}

/** hLast: the last time step of h [b, t, e] (t >= 1) as [b, e]. */
class LastStepProgram implements WebGPUProgram {
  variableNames = ['h'];
  outputShape: number[];
  shaderKey = 'rgLruLastStep';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;

  constructor(b: number, e: number) {
    this.outputShape = [b, e];
    this.dispatchLayout = {x: [0, 1]};
    this.dispatch = dispatchFor(b * e);
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.hShape.y;
        let E = uniforms.hShape.z;
        if (index >= uniforms.hShape.x * E) { return; }
        let bi = index / E;
        let c = index - bi * E;
        result[index] = h[(bi * T + T - 1) * E + c];
      }`;
  }
}

/** da = g * h[t-1], with h0 standing in for h[-1]. */
class DaProgram implements WebGPUProgram {
  variableNames = ['g', 'h', 'h0'];
  outputShape: number[];
  shaderKey = 'rgLruDa';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;

  constructor(b: number, t: number, e: number) {
    this.outputShape = [b, t, e];
    this.dispatchLayout = {x: [0, 1, 2]};
    this.dispatch = dispatchFor(b * t * e);
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.hShape.y;
        let E = uniforms.hShape.z;
        if (index >= uniforms.hShape.x * T * E) { return; }
        let row = index / E;
        let c = index - row * E;
        let bi = row / T;
        let tt = row - bi * T;
        var prev : f32;
        if (tt > 0) { prev = h[index - E]; } else { prev = h0[bi * E + c]; }
        result[index] = g[index] * prev;
      }`;
  }
}

/** dh0 = a[0] * g[0] (t >= 1). */
class Dh0Program implements WebGPUProgram {
  variableNames = ['a', 'g'];
  outputShape: number[];
  shaderKey = 'rgLruDh0';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize = WORKGROUP;

  constructor(b: number, e: number) {
    this.outputShape = [b, e];
    this.dispatchLayout = {x: [0, 1]};
    this.dispatch = dispatchFor(b * e);
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.aShape.y;
        let E = uniforms.aShape.z;
        if (index >= uniforms.aShape.x * E) { return; }
        let bi = index / E;
        let c = index - bi * E;
        let j = bi * T * E + c;
        result[index] = a[j] * g[j];
      }`;
  }
}

/** A new reference to the same data, as tfjs's Identity kernels do. */
function identity(backend: WebGPUBackend, x: TensorInfo): TensorInfo {
  backend.incRef(x.dataId);
  return {dataId: x.dataId, shape: [...x.shape], dtype: x.dtype};
}

/** The scan over time of coef * s + x from s0, forward or reversed (see stepLoop); t >= 1. */
function runScan(
    backend: WebGPUBackend, a: TensorInfo, x: TensorInfo, s0: TensorInfo,
    b: number, t: number, e: number, reverse: boolean): TensorInfo {
  const {chunk, numChunks} = scanPlan(t);
  if (chunk === 0) {
    return backend.runWebGPUProgram(new ScanSerialProgram(b, t, e, reverse), [a, x, s0], 'float32');
  }
  const chunkUniform = [{type: 'int32', data: [chunk]}];
  const summary = backend.runWebGPUProgram(
      new ChunkSummaryProgram(b, numChunks, e, reverse), [a, x], 'float32', chunkUniform);
  const carry = backend.runWebGPUProgram(
      new ChunkCarryProgram(b, numChunks, e, reverse), [summary, s0], 'float32');
  const out = backend.runWebGPUProgram(
      new ChunkApplyProgram(b, t, e, numChunks, reverse), [a, x, carry], 'float32', chunkUniform);
  // Safe while the GPU work is still queued: the backend defers the release.
  backend.disposeData(summary.dataId);
  backend.disposeData(carry.dataId);
  return out;
}

const forward: KernelFunc = ({inputs, backend}) => {
  const {a, x, h0} = inputs as {a: TensorInfo, x: TensorInfo, h0: TensorInfo};
  const [b, t, e] = scanDims(a.shape, x.shape, h0.shape);
  const be = backend as WebGPUBackend;
  if (t === 0) return [be.makeTensorInfo([b, 0, e], 'float32'), identity(be, h0)];
  const h = runScan(be, a, x, h0, b, t, e, false);
  const hLast = be.runWebGPUProgram(new LastStepProgram(b, e), [h], 'float32');
  return [h, hLast];
};

const backward: KernelFunc = ({inputs, backend}) => {
  const {a, h, h0, dh, dhLast} = inputs as Record<string, TensorInfo>;
  const [b, t, e] = scanDims(a.shape, h.shape, h0.shape);
  const be = backend as WebGPUBackend;
  if (t === 0) {
    return [be.makeTensorInfo([b, 0, e], 'float32'), be.makeTensorInfo([b, 0, e], 'float32'),
      identity(be, dhLast)];
  }
  const g = runScan(be, a, dh, dhLast, b, t, e, true);
  const da = be.runWebGPUProgram(new DaProgram(b, t, e), [g, h, h0], 'float32');
  const dh0 = be.runWebGPUProgram(new Dh0Program(b, e), [a, g], 'float32');
  return [g, da, dh0];
};

export const webgpuKernelConfigs: KernelConfig[] = [
  {kernelName: RG_LRU_SCAN, backendName: 'webgpu', kernelFunc: forward},
  {kernelName: RG_LRU_SCAN_GRAD, backendName: 'webgpu', kernelFunc: backward},
];
