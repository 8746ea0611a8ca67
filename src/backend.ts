/**
 * Picking and starting a tfjs backend in Node: cpu, wasm, webgpu (Dawn), or tensorflow
 * (tfjs-node / tfjs-node-gpu, optional peer dependencies).
 *   await useBackend('wasm');
 *   await useBackend();          // the fastest one installed: tensorflow, else wasm, else cpu
 */
import {tf} from './tf';

export const BACKENDS = ['cpu', 'wasm', 'webgpu', 'tensorflow'] as const;
export type BackendName = (typeof BACKENDS)[number];

function tryRequire(name: string): boolean {
  try {
    require(name);
    return true;
  } catch {
    return false;
  }
}

async function startWasm(): Promise<void> {
  // The backend package and this package's kernels for it (ops/register/index.ts: why not at import).
  require('../ops/register/wasm');
  if (!(await tf.setBackend('wasm'))) throw new Error('backend wasm: failed to start');
}

/**
 * Starts the named backend (or the best available one) and returns its name. Errors are one
 * line and name the backend.
 */
export async function useBackend(name?: string): Promise<BackendName> {
  if (name != null && !(BACKENDS as readonly string[]).includes(name)) {
    throw new Error(`unknown backend ${JSON.stringify(name)} (expected one of ${BACKENDS.join(', ')})`);
  }
  if (name == null) {
    if (tryRequire('@tensorflow/tfjs-node-gpu') || tryRequire('@tensorflow/tfjs-node')) return useBackend('tensorflow');
    try {
      await startWasm();
      return 'wasm';
    } catch {
      return useBackend('cpu');
    }
  }
  switch (name as BackendName) {
    case 'cpu':
      if (!(await tf.setBackend('cpu'))) throw new Error('backend cpu: failed to start');
      return 'cpu';
    case 'wasm':
      await startWasm();
      return 'wasm';
    case 'webgpu': {
      const {initNodeWebGPU} = await import('./webgpu_node');
      await initNodeWebGPU();
      return 'webgpu';
    }
    case 'tensorflow':
      if (!tryRequire('@tensorflow/tfjs-node-gpu') && !tryRequire('@tensorflow/tfjs-node')) {
        throw new Error('backend tensorflow: install @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu first');
      }
      if (!(await tf.setBackend('tensorflow'))) throw new Error('backend tensorflow: failed to start');
      return 'tensorflow';
  }
}
