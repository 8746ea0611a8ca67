/**
 * The tfjs namespace the package uses, with every gradient registered.
 *   import {tf} from './tf';
 *
 * `@tensorflow/tfjs-core`'s CommonJS build registers no gradients; the union package's does
 * (and brings tfjs-layers and the cpu backend, which we use anyway), so that is the entry.
 */
import * as tf from '@tensorflow/tfjs';
import '../ops/register';

export {tf};
