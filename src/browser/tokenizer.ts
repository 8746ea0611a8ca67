/**
 * GemmaTokenizer.load in the browser bundle: from a URL (fetched), a Hub id, or the file's bytes.
 *   installBrowserTokenizerLoad();   // the bundle's entry, once: GemmaTokenizer.load is loadTokenizer from then on
 *   const tok = await loadTokenizer('models/tiny/tokenizer.model');   // fetched, relative to the page
 *   const tok2 = await loadTokenizer(bytes);                          // Uint8Array / ArrayBuffer (.model or .json)
 *   const tok3 = await loadTokenizer('owner/name', {revision: 'main'});   // the Hub (src/browser/hub.ts)
 *
 * A URL may name tokenizer.json, tokenizer.model or the folder holding one (tokenizer.json
 * preferred, as in Node); tokenizer_config.json beside it is fetched too when there is one (its
 * chat template, add_bos_token). The bytes are put in the bundle's fs (src/browser/fs.ts) under a
 * private folder for the one load: sentencepiece-js and the tokenizer.json reader read files.
 */

import {fetchBytes} from '../../converters/tfjs_url';
import {GemmaTokenizer, TOKENIZER_CONFIG, TOKENIZER_JSON, TOKENIZER_MODEL} from '../tokenizer';
import {forgetFile, provideFile} from './fs';
import {type HubOptions, hubFile, isHubId} from './hub';

export type TokenizerSource = string | URL | ArrayBuffer | Uint8Array;

const loadByName = GemmaTokenizer.load.bind(GemmaTokenizer);
let loads = 0;

/** The first of `names` fetched from `get`, as [name, bytes]; null when none is there. */
async function firstOf(
  names: string[],
  get: (name: string) => Promise<Uint8Array | null>,
): Promise<[string, Uint8Array] | null> {
  for (const n of names) {
    const b = await get(n);
    if (b != null) return [n, b];
  }
  return null;
}

/** The tokenizer's files from a Hub id or a URL: {name: bytes}, the tokenizer first. */
async function fetchFiles(source: string, opts: HubOptions): Promise<{what: string; files: [string, Uint8Array][]}> {
  if (isHubId(source)) {
    const get = async (f: string) => (await hubFile(source, f, opts, true))?.bytes ?? null;
    const tok = await firstOf([TOKENIZER_JSON, TOKENIZER_MODEL], get);
    if (tok == null) throw new Error(`${source}: no ${TOKENIZER_JSON} or ${TOKENIZER_MODEL} on the Hub`);
    const cfg = await get(TOKENIZER_CONFIG);
    return {what: source, files: cfg == null ? [tok] : [tok, [TOKENIZER_CONFIG, cfg]]};
  }
  const what = new URL(source, typeof location !== 'undefined' ? location.href : undefined).href;
  const get = (u: string) => fetchBytes(u).catch(() => null);
  let tok: [string, Uint8Array] | null;
  if (what.endsWith('/')) {
    tok = await firstOf([TOKENIZER_JSON, TOKENIZER_MODEL], (n) => get(new URL(n, what).href));
    if (tok == null) throw new Error(`tokenizer: no ${TOKENIZER_JSON} or ${TOKENIZER_MODEL} at ${what}`);
  } else {
    try {
      tok = [what.endsWith('.json') ? TOKENIZER_JSON : TOKENIZER_MODEL, await fetchBytes(what)];
    } catch (e) {
      throw new Error(`tokenizer: ${(e as Error).message}`);
    }
  }
  const cfg = await get(new URL(TOKENIZER_CONFIG, what).href);
  return {what, files: cfg == null ? [tok] : [tok, [TOKENIZER_CONFIG, cfg]]};
}

export async function loadTokenizer(source: TokenizerSource, opts: HubOptions = {}): Promise<GemmaTokenizer> {
  let what: string, files: [string, Uint8Array][];
  if (typeof source === 'string' || source instanceof URL) {
    ({what, files} = await fetchFiles(String(source), opts));
  } else if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
    // A tokenizer.json is a JSON object; a .model file is a protobuf (never starts with '{').
    let i = 0;
    while (i < bytes.length && [0x20, 0x09, 0x0a, 0x0d, 0xef, 0xbb, 0xbf].includes(bytes[i])) i++;
    files = [[bytes[i] === 0x7b ? TOKENIZER_JSON : TOKENIZER_MODEL, bytes]];
    what = 'bytes';
  } else {
    throw new Error(
      `tokenizer: expected a URL, a Hub id, an ArrayBuffer or a Uint8Array, got ${Object.prototype.toString.call(source)}`,
    );
  }
  const dir = `/griffin-tokenizer/${++loads}`;
  for (const [name, bytes] of files) provideFile(`${dir}/${name}`, bytes);
  try {
    return await loadByName(`${dir}/${files[0][0]}`);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  } finally {
    for (const [name] of files) forgetFile(`${dir}/${name}`);
  }
}

/** Makes GemmaTokenizer.load take URLs, Hub ids and bytes (the bundle's entry calls it once). */
export function installBrowserTokenizerLoad(): void {
  (GemmaTokenizer as unknown as {load: typeof loadTokenizer}).load = loadTokenizer;
}
