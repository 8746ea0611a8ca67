/**
 * BatchMatMul for the wasm backend that always ends in tfjs-wasm's fast path.
 *   registerWasmMatMul();        // before or after tf.setBackend('wasm'); src/backend.ts does it
 *
 * tfjs-backend-wasm 4.22 sends only a plain 2D product (no transpose, batch 1) to XNNPACK;
 * everything else runs a naive loop, many times slower: a transposed operand, a batched product
 * against one matrix, a batch of matrices (figures: see bench/results/NOTES.md). This model
 * hits all of these: Linear keeps PyTorch's [out, in] weights and multiplies with transposeB,
 * the tied LM head too, attention's q k^T, the RG-LRU's per-head gates, and the gradients.
 *
 * So this kernel rewrites every product into plain 2D ones for the original kernel:
 * - transposed operands are transposed explicitly (O(size), small next to the product);
 * - a batch against one matrix becomes one [batch * m, k] x [k, n] product (a reshape, no copy);
 * - a batch against a batch of matrices becomes one 2D product per matrix (when each is large
 *   enough to repay the slicing: below, the original runs).
 * A transposed or sliced copy of a tfjs variable (the weights) is kept and reused, so decoding
 * does not transpose the weights at every token and XNNPACK, which caches its packed weights per
 * input buffer, keeps them packed too. The copy belongs to the variable's current data: a write
 * (assign, an optimizer step) gives the variable new data and the old data's disposal frees the
 * copy, so training always multiplies with the current weights. Cost: one more copy of every
 * weight that is multiplied transposed (on top of XNNPACK's packed copy, which tfjs-wasm makes
 * for any weight it multiplies), up to `wasmMatMulConfig.maxCacheBytes` (1 GiB; the heap is
 * 4 GiB); weights past the budget, or all with `cacheWeights = false`, are transposed per call.
 * The copies live in the backend, outside tf.memory()'s tensor count (`wasmMatMulCacheBytes()`
 * reports them).
 */
import {
  broadcast_util,
  engine,
  getKernel,
  KernelConfig,
  KernelFunc,
  registerKernel,
  TensorInfo,
  unregisterKernel,
  util,
} from '@tensorflow/tfjs-core';
import {wrapKernel} from './wrap_kernel';

export const wasmMatMulConfig = {
  /** Keep transposed / per-slice copies of variables (weights) between calls. */
  cacheWeights: true,
  /**
   * Copies kept at most (bytes). The wasm heap is 4 GiB and also holds the weights and
   * XNNPACK's packed copies; past this budget further weights are transposed per call instead.
   */
  maxCacheBytes: 2 ** 30,
};

type DataId = object;
interface WasmBackend {
  dataIdMap: {get(id: DataId): {id: number} | undefined; has(id: DataId): boolean};
  disposeData(id: DataId, force?: boolean): boolean;
}

interface Prepared {
  /** Plain (untransposed) 2D matrices [k, n], one per batch entry of b. */
  slices: TensorInfo[];
  bytes: number;
}

let original: KernelConfig | null = null;
const PER_MATRIX_MIN_WORK = 1 << 22;
/** Per backend instance: prepared copies of variables' data, by the variable's dataId. */
const caches = new WeakMap<object, Map<DataId, Prepared>>();

function kernel(name: string): KernelFunc {
  const k = getKernel(name, 'wasm');
  if (k == null) throw new Error(`wasm matMul: tfjs-backend-wasm has no ${name} kernel`);
  return k.kernelFunc;
}

function call(name: string, backend: unknown, inputs: Record<string, TensorInfo>, attrs: object): TensorInfo {
  return kernel(name)({inputs, backend: backend as never, attrs: attrs as never}) as TensorInfo;
}

function release(backend: WasmBackend, ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

function isVariable(t: TensorInfo): boolean {
  const vars = (engine() as unknown as {state: {registeredVariables: Record<string, {dataId: DataId}>}}).state
    .registeredVariables;
  for (const k in vars) if (vars[k].dataId === t.dataId) return true;
  return false;
}

/** The backend's cache, installing (once per backend) the hook that drops entries with their data. */
function cacheOf(backend: WasmBackend): Map<DataId, Prepared> {
  let cache = caches.get(backend);
  if (cache != null) return cache;
  const c = new Map<DataId, Prepared>();
  cache = c;
  caches.set(backend, c);
  const dispose = backend.disposeData.bind(backend);
  backend.disposeData = (id: DataId, force?: boolean) => {
    const gone = dispose(id, force);
    if (c.size > 0 && !backend.dataIdMap.has(id)) {
      const p = c.get(id);
      if (p != null) {
        c.delete(id);
        for (const s of p.slices) dispose(s.dataId, true);
      }
    }
    return gone;
  };
  return cache;
}

/** x [batch, r, c] (or transposed: [batch, c, r] read as its transpose) as `batch` plain 2D [r, c] matrices. */
function plainSlices(
  backend: WasmBackend,
  x: TensorInfo,
  batch: number,
  rows: number,
  cols: number,
  transposed: boolean,
): TensorInfo[] {
  const x3 = call('Reshape', backend, {x}, {shape: transposed ? [batch, cols, rows] : [batch, rows, cols]});
  const out: TensorInfo[] = [];
  try {
    for (let i = 0; i < batch; i++) {
      let s = batch === 1 ? x3 : call('Slice', backend, {x: x3}, {begin: [i, 0, 0], size: [1, -1, -1]});
      if (transposed) {
        const t = call('Transpose', backend, {x: s}, {perm: [0, 2, 1]});
        if (s !== x3) backend.disposeData(s.dataId);
        s = t;
      } else if (s === x3) {
        // Keep our own reference: x3 is released below.
        s = call('Reshape', backend, {x: x3}, {shape: [1, rows, cols]});
      }
      out.push(s);
    }
  } finally {
    backend.disposeData(x3.dataId);
  }
  return out;
}

const batchMatMul: KernelFunc = ({inputs, backend: be, attrs}) => {
  const {a, b} = inputs as {a: TensorInfo; b: TensorInfo};
  const {transposeA, transposeB} = attrs as unknown as {transposeA: boolean; transposeB: boolean};
  const backend = be as unknown as WasmBackend;
  const orig = original!.kernelFunc;
  const ra = a.shape.length,
    rb = b.shape.length;
  if (ra < 2 || rb < 2 || a.dtype !== 'float32' || b.dtype !== 'float32') return orig({inputs, backend: be, attrs});
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = util.sizeFromShape(b.shape.slice(0, -2));
  const plain = !transposeA && !transposeB && batchA === 1 && batchB === 1;
  // Shapes the original checks itself (and its error messages), and the fast case.
  if (plain || k !== kb || (batchA !== batchB && batchA !== 1 && batchB !== 1) || m * n * k === 0) {
    return orig({inputs, backend: be, attrs});
  }
  // Per-matrix products pay a Slice per matrix of a and a Concat: below ~4M multiply-adds per
  // matrix the original's loop is about as fast (measured, min of 7: [4, 1, 64] x [4, 64, 64], a
  // decode step's gates in the small model, 0.05 ms either way; [4, 512, 64] 21 ms there, 27 ms
  // split), above it the split wins ([10, 512, 256] x [10, 256, 256]: 510 ms there, 76 ms split).
  if (batchB > 1 && m * k * n < PER_MATRIX_MIN_WORK) return orig({inputs, backend: be, attrs});
  const outShape = [...broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), m, n];
  const batch = Math.max(batchA, batchB);

  // b as plain [k, n] matrices, from the cache for a variable.
  let bSlices: TensorInfo[];
  let ownB = true;
  const needsB = transposeB || batchB > 1;
  if (!needsB) {
    bSlices = [call('Reshape', backend, {x: b}, {shape: [1, k, n]})];
  } else if (
    wasmMatMulConfig.cacheWeights &&
    isVariable(b) &&
    (cacheOf(backend).has(b.dataId) ||
      cachedBytes(cacheOf(backend)) + batchB * k * n * 4 <= wasmMatMulConfig.maxCacheBytes)
  ) {
    const cache = cacheOf(backend);
    let p = cache.get(b.dataId);
    if (p == null) {
      const slices = plainSlices(backend, b, batchB, k, n, transposeB);
      p = {slices, bytes: batchB * k * n * 4};
      cache.set(b.dataId, p);
    }
    bSlices = p.slices;
    ownB = false;
  } else {
    bSlices = plainSlices(backend, b, batchB, k, n, transposeB);
  }

  const temps: TensorInfo[] = [];
  try {
    if (batchB === 1) {
      // One product: [batchA * m, k] x [k, n].
      let a2: TensorInfo;
      if (transposeA) {
        const a3 = call('Reshape', backend, {x: a}, {shape: [batchA, k, m]});
        temps.push(a3);
        a2 = call('Transpose', backend, {x: a3}, {perm: [0, 2, 1]});
        temps.push(a2);
      } else {
        a2 = a;
      }
      const a1 = call('Reshape', backend, {x: a2}, {shape: [1, batchA * m, k]});
      temps.push(a1);
      const y = orig({
        inputs: {a: a1, b: bSlices[0]},
        backend: be,
        attrs: {transposeA: false, transposeB: false},
      }) as TensorInfo;
      temps.push(y);
      return call('Reshape', backend, {x: y}, {shape: outShape});
    }
    // One product per matrix of b.
    const aSlices = plainSlices(backend, a, batchA, m, k, transposeA);
    temps.push(...aSlices);
    const outs: TensorInfo[] = [];
    for (let i = 0; i < batch; i++) {
      const y = orig({
        inputs: {a: aSlices[batchA === 1 ? 0 : i], b: bSlices[i]},
        backend: be,
        attrs: {transposeA: false, transposeB: false},
      }) as TensorInfo;
      outs.push(y);
      temps.push(y);
    }
    const y =
      outs.length === 1 ? outs[0] : call('Concat', backend, outs as unknown as Record<string, TensorInfo>, {axis: 0});
    if (y !== outs[0]) temps.push(y);
    return call('Reshape', backend, {x: y}, {shape: outShape});
  } finally {
    release(backend, temps);
    if (ownB) release(backend, bSlices);
  }
};

function cachedBytes(c: Map<DataId, Prepared>): number {
  let sum = 0;
  for (const p of c.values()) sum += p.bytes;
  return sum;
}

/** Bytes held by cached weight copies on the current wasm backend (0 when none or not wasm). */
export function wasmMatMulCacheBytes(): number {
  let backend: object | undefined;
  try {
    backend = engine().findBackend('wasm') ?? undefined;
  } catch {
    return 0;
  }
  const c = backend && caches.get(backend);
  return c ? cachedBytes(c) : 0;
}

/** Installs the kernel for wasm (idempotent). Needs tfjs-backend-wasm imported first. */
export function registerWasmMatMul(): void {
  original =
    wrapKernel('BatchMatMul', 'wasm', batchMatMul, 'wasm matMul: import @tensorflow/tfjs-backend-wasm first') ??
    original;
}

/** Puts tfjs-wasm's own kernel back (for measuring against it). */
export function unregisterWasmMatMul(): void {
  const current = getKernel('BatchMatMul', 'wasm');
  if (original == null || current == null || current.kernelFunc !== batchMatMul) return;
  unregisterKernel('BatchMatMul', 'wasm');
  registerKernel(original);
}
