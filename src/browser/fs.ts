/**
 * What the browser bundle gets for Node's `fs` (scripts/build_browser.mjs maps it here): a small
 * in-memory file table. The browser code puts bytes it fetched under a name, and code written
 * against fs (sentencepiece-js reads its model with readFileSync) reads them back; anything
 * else about files is an error that says it is Node-only.
 *   provideFile('tok', bytes);   // then sentencepiece-js's load('tok') reads it back:
 *   try { readFileSync('tok'); } finally { forgetFile('tok'); }
 */
const files = new Map<string, Uint8Array>();

export function provideFile(name: string, bytes: Uint8Array): void {
  files.set(name, bytes);
}

export function forgetFile(name: string): void {
  files.delete(name);
}

function nodeOnly(what: string): never {
  throw new Error(`fs.${what}: files are Node-only; in the browser load models and tokenizers from a URL`);
}

export function readFileSync(name: unknown, encoding?: unknown): Uint8Array | string {
  const bytes = typeof name === 'string' ? files.get(name) : undefined;
  if (bytes == null) {
    const e = new Error(`ENOENT: ${String(name)} (in the browser only fetched files can be read)`) as Error & {
      code: string;
    };
    e.code = 'ENOENT';
    throw e;
  }
  const enc = typeof encoding === 'string' ? encoding : (encoding as {encoding?: string} | undefined)?.encoding;
  return enc != null ? new TextDecoder().decode(bytes) : bytes;
}

export function existsSync(name: unknown): boolean {
  return typeof name === 'string' && files.has(name);
}

export function statSync(name: unknown): {size: number; isDirectory(): boolean; isFile(): boolean} {
  const bytes = readFileSync(name) as Uint8Array;
  return {size: bytes.length, isDirectory: () => false, isFile: () => true};
}

// Everything else fs has is Node-only; named so that bundled modules importing them resolve.
export const writeFileSync = () => nodeOnly('writeFileSync');
export const mkdirSync = () => nodeOnly('mkdirSync');
export const readdirSync = () => nodeOnly('readdirSync');
export const renameSync = () => nodeOnly('renameSync');
export const unlinkSync = () => nodeOnly('unlinkSync');
export const rmSync = () => nodeOnly('rmSync');
export const openSync = () => nodeOnly('openSync');
export const closeSync = () => nodeOnly('closeSync');
export const readSync = () => nodeOnly('readSync');
export const writeSync = () => nodeOnly('writeSync');
export const fstatSync = () => nodeOnly('fstatSync');
export const fsyncSync = () => nodeOnly('fsyncSync');
export const copyFileSync = () => nodeOnly('copyFileSync');
export const mkdtempSync = () => nodeOnly('mkdtempSync');
export const createReadStream = () => nodeOnly('createReadStream');
export const createWriteStream = () => nodeOnly('createWriteStream');
export const appendFileSync = () => nodeOnly('appendFileSync');
export const lstatSync = () => nodeOnly('lstatSync');
export const realpathSync = () => nodeOnly('realpathSync');
export const promises = new Proxy({}, {get: (_t, k) => () => nodeOnly(`promises.${String(k)}`)});
