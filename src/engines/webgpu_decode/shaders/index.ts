/**
 * The fused decode engine's WGSL generators, one kernel per module (plus common.ts), gathered.
 *   import {gemvSource, rgLruSource, ropeSource, attnPartialSource, attnCombineSource, embedSource} from './shaders';
 *
 * Shape letters: see each module (B batch rows throughout).
 */

export * from './argmax';
export * from './attention_combine';
export * from './attention_partial';
export * from './common';
export * from './embed';
export * from './gemv';
export * from './rg_lru';
export * from './rope';
