/**
 * The browser bundle's entry (scripts/build_browser.mjs -> dist/browser/griffin.esm.js): the
 * package's API as in Node, plus fine-tuning, with the browser's backends and loaders.
 *   import {RecurrentGemmaForCausalLM, GemmaTokenizer, useBackend} from './griffin.esm.js';
 *   await useBackend();                                             // webgpu, webgl, wasm or cpu
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('models/web/', {onProgress});
 *   const tok = await GemmaTokenizer.load('models/web/tokenizer.model');
 */
import {installBrowserTokenizerLoad} from './tokenizer';

export * from '../index';
export * from '../training';
// Both of the above export these; name them once.
export {causalLMLoss, IGNORE_INDEX} from '../../ops/loss';
// The browser's versions of Node's useBackend and its list.
export {useBackend, BROWSER_BACKENDS as BACKENDS, setWasmFolder} from './backend';
export type {BrowserBackendName as BackendName} from './backend';
export {loadTokenizer} from './tokenizer';
export type {TokenizerSource} from './tokenizer';
export {loadTfjsUrl, fetchBytes} from '../../converters/tfjs_url';

installBrowserTokenizerLoad();
