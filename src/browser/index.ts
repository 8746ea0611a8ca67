/**
 * The browser bundle's entry (scripts/build_browser.mjs -> dist/browser/griffin.esm.js): the
 * package's API as in Node, plus fine-tuning, with the browser's backends and loaders.
 *   import {RecurrentGemmaForCausalLM, GemmaTokenizer, useBackend} from './griffin.esm.js';
 *   await useBackend();                                             // webgpu, webgl, wasm or cpu
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('models/web/', {
 *     onProgress: (p) => bar(p.loaded / p.total),                  // bytes, as the shards arrive
 *   });
 *   const tok = await GemmaTokenizer.load('models/web/tokenizer.model');
 */

import type {LoadOptions} from '../../converters/index';
import {RecurrentGemmaForCausalLM} from '../model';
import {installBrowserTokenizerLoad} from './tokenizer';

export {fetchBytes} from '../../converters/tfjs_url';
// Both of the above export these; name them once.
export {causalLMLoss, IGNORE_INDEX} from '../../ops/loss';
export * from '../index';
export * from '../training';
// useBackend, BACKENDS and initNodeWebGPU above are the browser's (scripts/build_browser.mjs
// puts src/browser/backend.ts and webgpu_node.ts where src/backend.ts and webgpu_node.ts were).
export {setWasmFolder} from './backend';
export type {TokenizerSource} from './tokenizer';
export {loadTokenizer} from './tokenizer';

/** A tfjs-layout model at a URL (or indexeddb://): what fromPretrained does with a URL; kept for 0.1's page code. */
export function loadTfjsUrl(url: string, opts: LoadOptions = {}): Promise<RecurrentGemmaForCausalLM> {
  return RecurrentGemmaForCausalLM.fromPretrained(url, opts);
}

installBrowserTokenizerLoad();
