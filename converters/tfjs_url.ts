/**
 * The tfjs format from a URL: `http(s)://.../model.json` (or the directory holding it, or in a
 * browser any URL relative to the page) and `indexeddb://name` / `localstorage://name` (what
 * `model.save('indexeddb://name')` wrote). What `fromPretrained(url)` uses; works in Node too.
 *   const ckpt = await openTfjsUrl('https://host/web/');
 *   await ckpt.loadInto(new CausalLMCore(ckpt.config, {init: 'zeros'}), (p) => bar(p.loaded / p.total));
 *
 * Over http the shards are streamed and progress is reported in bytes as they arrive
 * ({loaded, total, unit: 'bytes', name: shard}); names and shapes are checked against the config before any
 * shard is fetched, and the weights are decoded like the file loader does (float16 / uint8).
 */

import {RecurrentGemmaConfig} from '../src/config';
import {tf} from '../src/tf';
import type {OnProgress} from '../src/util/progress';
import {CheckpointReader, checkpointTensors, ModelParameters, writeTensorData} from './checkpoint_tensors';
import {CheckpointError} from './safetensors';
import {
  bytesPer,
  checkManifestPaths,
  decode,
  float32BytesOf,
  MODEL_JSON,
  storedDtypeOf,
  WeightSpec,
} from './tfjs_format';

const STORE = /^(indexeddb|localstorage):\/\//i;

/** Whether fromPretrained should treat `source` as a URL (always, in a browser). */
export function isUrlSource(source: string): boolean {
  return /^(https?|indexeddb|localstorage):\/\//i.test(source) || tf.env().getBool('IS_BROWSER');
}

function absolute(url: string): string {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  try {
    return new URL(url, base).href;
  } catch {
    throw new CheckpointError(`${url}: not a valid URL`);
  }
}

/** The model.json URL of a model URL: itself if it names a .json file, else `<dir>/model.json`. */
export function modelJsonUrl(url: string): string {
  const u = new URL(absolute(url));
  if (!u.pathname.endsWith('.json')) u.pathname = u.pathname.replace(/\/?$/, `/${MODEL_JSON}`);
  return u.href;
}

/**
 * GETs a URL into one byte array, calling onBytes(received, expected) as chunks arrive.
 * `expected` is the caller's size when known, else Content-Length (0 when unknown).
 */
export async function fetchBytes(
  url: string,
  onBytes?: (received: number, expected: number) => void,
  expected?: number,
): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new CheckpointError(`${url}: fetch failed (${(e as Error).message})`);
  }
  if (!res.ok) throw new CheckpointError(`${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
  const size = expected ?? Number(res.headers.get('content-length') ?? 0);
  if (res.body == null || typeof res.body.getReader !== 'function') {
    const all = new Uint8Array(await res.arrayBuffer());
    onBytes?.(all.length, size);
    return all;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let got = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onBytes?.(got, size);
  }
  if (chunks.length === 1) return chunks[0];
  const all = new Uint8Array(got);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

interface Artifacts {
  where: string;
  specs: WeightSpec[];
  config: RecurrentGemmaConfig;
  /** Fetches (or hands over) the weight bytes, laid out as the specs say. */
  weights(onProgress?: OnProgress): Promise<Uint8Array>;
}

function configOf(where: string, metadata: unknown): RecurrentGemmaConfig {
  const cfg = (metadata as {griffin?: {config?: Record<string, unknown>}} | undefined)?.griffin?.config;
  if (cfg == null)
    throw new CheckpointError(`${where}: no userDefinedMetadata.griffin.config (not written by griffin-tfjs)`);
  try {
    return RecurrentGemmaConfig.fromJSON(cfg);
  } catch (e) {
    throw new CheckpointError(`${where}: ${(e as Error).message}`);
  }
}

async function httpArtifacts(url: string): Promise<Artifacts> {
  const where = modelJsonUrl(url);
  const text = new TextDecoder().decode(await fetchBytes(where));
  let json: {weightsManifest?: {paths: string[]; weights: WeightSpec[]}[]; userDefinedMetadata?: unknown};
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  checkManifestPaths(where, json.weightsManifest);
  const config = configOf(where, json.userDefinedMetadata);
  const groups = json.weightsManifest;
  return {
    where,
    config,
    specs: groups.flatMap((g) => g.weights),
    async weights(onProgress) {
      const need = groups
        .flatMap((g) => g.weights)
        .reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * bytesPer(w), 0);
      const all = new Uint8Array(need);
      let off = 0;
      for (const g of groups) {
        for (const p of g.paths) {
          const shard = new URL(p, where).href;
          const start = off;
          const bytes = await fetchBytes(shard, (got) =>
            onProgress?.({loaded: Math.min(start + got, need), total: need, unit: 'bytes', name: p}),
          );
          if (start + bytes.length > need)
            throw new CheckpointError(`${where}: the shards hold more bytes than the manifest needs (${need})`);
          all.set(bytes, start);
          off += bytes.length;
        }
      }
      if (off !== need)
        throw new CheckpointError(
          `${where}: the shards hold ${off} bytes, the manifest needs ${need} (truncated or corrupt)`,
        );
      return all;
    },
  };
}

async function storeArtifacts(url: string): Promise<Artifacts> {
  const handlers = tf.io.getLoadHandlers(url);
  if (handlers.length === 0 || handlers[0].load == null) {
    throw new CheckpointError(
      `${url}: no tfjs load handler for this URL (IndexedDB and localStorage exist only in a browser)`,
    );
  }
  let a: tf.io.ModelArtifacts;
  try {
    a = await handlers[0].load();
  } catch (e) {
    throw new CheckpointError(`${url}: ${(e as Error).message}`);
  }
  const config = configOf(url, a.userDefinedMetadata);
  if (a.weightSpecs == null || a.weightData == null) throw new CheckpointError(`${url}: holds no weights`);
  const data = new Uint8Array(tf.io.CompositeArrayBuffer.join(a.weightData));
  return {
    where: url,
    config,
    specs: a.weightSpecs as WeightSpec[],
    async weights(onProgress) {
      onProgress?.({loaded: data.length, total: data.length, unit: 'bytes', name: url});
      return data;
    },
  };
}

/** Opens a tfjs-format model at a URL (see the module comment): its manifest now, its weights on loadInto. */
export async function openTfjsUrl(url: string): Promise<CheckpointReader> {
  const a = STORE.test(url) ? await storeArtifacts(url) : await httpArtifacts(url);
  return {
    where: a.where,
    config: a.config,
    storedDtype: storedDtypeOf(a.specs),
    float32Bytes: float32BytesOf(a.specs),
    loadInto: (model, onProgress) => loadInto(a, model, onProgress),
  };
}

async function loadInto(a: Artifacts, model: ModelParameters, onProgress?: OnProgress): Promise<void> {
  const byName = new Map([...checkpointTensors(model).values()].map((t) => [t.tfjsName, t]));
  const seen = new Set<string>();
  for (const spec of a.specs) {
    const v = byName.get(spec.name);
    if (v == null) throw new CheckpointError(`${a.where}: unexpected weight ${JSON.stringify(spec.name)}`);
    if (spec.shape.length !== v.shape.length || spec.shape.some((d, i) => d !== v.shape[i])) {
      throw new CheckpointError(
        `${a.where}: weight ${JSON.stringify(spec.name)} has shape [${spec.shape}], the config needs [${v.shape}]`,
      );
    }
    if (spec.dtype !== 'float32')
      throw new CheckpointError(
        `${a.where}: weight ${JSON.stringify(spec.name)} has dtype ${spec.dtype}, expected float32`,
      );
    seen.add(spec.name);
  }
  const missing = [...byName.keys()].filter((n) => !seen.has(n));
  if (missing.length > 0) throw new CheckpointError(`${a.where}: missing weight ${JSON.stringify(missing[0])}`);
  const bytes = await a.weights(onProgress);
  let off = 0;
  for (const spec of a.specs) {
    const n = spec.shape.reduce((x, y) => x * y, 1) * bytesPer(spec);
    if (off + n > bytes.length)
      throw new CheckpointError(`${a.where}: the weights hold ${bytes.length} bytes, fewer than the manifest needs`);
    writeTensorData(byName.get(spec.name)!, decode(bytes.subarray(off, off + n), spec));
    off += n;
  }
}
