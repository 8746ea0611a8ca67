/**
 * The tfjs namespace the package uses, with every gradient registered.
 *   import {tf} from './tf';
 *
 * `@tensorflow/tfjs-core`'s CommonJS build registers no gradients; the union package's does
 * (and brings tfjs-layers and the cpu backend, which we use anyway), so that is the entry.
 */
import * as tf from '@tensorflow/tfjs';
import '../ops/register'; // this package's kernels, once

// The cpu backend prints a one-time "install tfjs-node" banner on first use in Node; for this
// package's users that is noise (tfjs-node is an optional peer dependency, chosen by
// useBackend when installed), so mark the banner as shown.
const cpu = tf.findBackend('cpu') as unknown as {firstUse?: boolean} | null;
if (cpu != null) cpu.firstUse = false;

export {tf};
