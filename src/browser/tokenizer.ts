/**
 * GemmaTokenizer.load in the browser bundle: from a URL (fetched) or from the model's bytes.
 *   installBrowserTokenizerLoad();   // the bundle's entry, once: GemmaTokenizer.load is loadTokenizer from then on
 *   const tok = await loadTokenizer('models/tiny/tokenizer.model');   // fetched, relative to the page
 *   const tok2 = await loadTokenizer(bytes);                          // Uint8Array / ArrayBuffer
 *
 * sentencepiece-js is an emscripten build with its wasm inlined (a data: URI), so it runs in a
 * browser as it is; only its load(path) reads the model with fs.readFileSync. The bundle's fs is
 * src/browser/fs.ts, so the fetched bytes are put there under a private name for the one load.
 */

import {fetchBytes} from '../../converters/tfjs_url';
import {GemmaTokenizer} from '../tokenizer';
import {forgetFile, provideFile} from './fs';

export type TokenizerSource = string | URL | ArrayBuffer | Uint8Array;

const loadByName = GemmaTokenizer.load.bind(GemmaTokenizer);
let loads = 0;

export async function loadTokenizer(source: TokenizerSource): Promise<GemmaTokenizer> {
  let bytes: Uint8Array, what: string;
  if (typeof source === 'string' || source instanceof URL) {
    what = new URL(String(source), typeof location !== 'undefined' ? location.href : undefined).href;
    try {
      bytes = await fetchBytes(what);
    } catch (e) {
      throw new Error(`tokenizer: ${(e as Error).message}`);
    }
  } else if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
    what = 'bytes';
  } else {
    throw new Error(
      `tokenizer: expected a URL, an ArrayBuffer or a Uint8Array, got ${Object.prototype.toString.call(source)}`,
    );
  }
  const name = `/griffin-tokenizer/${++loads}.model`;
  provideFile(name, bytes);
  try {
    return await loadByName(name);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  } finally {
    forgetFile(name);
  }
}

/** Makes GemmaTokenizer.load take URLs and bytes (the bundle's entry calls it once). */
export function installBrowserTokenizerLoad(): void {
  (GemmaTokenizer as unknown as {load: typeof loadTokenizer}).load = loadTokenizer;
}
