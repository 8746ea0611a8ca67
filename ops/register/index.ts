/**
 * Registers this package's kernels for every backend whose registration can run at import:
 * cpu and the standard-op backends (tensorflow, webgl). The package's entry imports it once
 * (src/tf.ts).
 *   import '../ops/register';
 *
 * One module per backend, as tfjs does with register_all_kernels.ts: ./cpu, ./tensorflow,
 * ./wasm, ./webgpu. The wasm and webgpu modules import their tfjs backend package first (their
 * kernels wrap or replace its own), and importing those packages has effects: wasm registers
 * itself above cpu, and tfjs-backend-webgpu in Node registers no backend unless navigator.gpu
 * (Dawn) exists by then. So the browser entry imports them at load, and in Node the backend
 * starters (src/backend.ts, src/webgpu_node.ts) import them when they start that backend.
 */
import '../rg_lru_scan/index';
import './cpu';
import './tensorflow';
