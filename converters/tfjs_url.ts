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
import type {CheckpointReader, ModelParameters} from './checkpoint_tensors';
import {checkTensorList} from './config_tensors';
import {CheckpointError} from './safetensors';
import {MODEL_JSON} from './tfjs_format';
import {
  checkManifestPaths,
  float32BytesOf,
  modelTensors,
  planWeights,
  readStored,
  storedSpecOf,
  type WeightPlan,
  type WeightSpec,
  writeStored,
} from './tfjs_weights';

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
  fetchFn: typeof fetch = fetch,
): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetchFn(url);
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
  groups: {weights: WeightSpec[]}[];
  metadata: unknown;
  config: RecurrentGemmaConfig;
  /** Fetches (or hands over) the weight bytes of every group, one after the other; `need` bytes in all. */
  weights(need: number, onProgress?: OnProgress): Promise<Uint8Array>;
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

async function httpArtifacts(url: string, fetchFn: typeof fetch): Promise<Artifacts> {
  const where = modelJsonUrl(url);
  const text = new TextDecoder().decode(await fetchBytes(where, undefined, undefined, fetchFn));
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
    groups,
    metadata: json.userDefinedMetadata,
    async weights(need, onProgress) {
      const all = new Uint8Array(need);
      let off = 0;
      for (const g of groups) {
        for (const p of g.paths) {
          const shard = new URL(p, where).href;
          const start = off;
          const bytes = await fetchBytes(
            shard,
            (got) => onProgress?.({loaded: Math.min(start + got, need), total: need, unit: 'bytes', name: p}),
            undefined,
            fetchFn,
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
    groups: [{weights: a.weightSpecs as WeightSpec[]}],
    metadata: a.userDefinedMetadata,
    async weights(need, onProgress) {
      if (data.length !== need)
        throw new CheckpointError(`${url}: holds ${data.length} bytes of weights, the manifest needs ${need}`);
      onProgress?.({loaded: data.length, total: data.length, unit: 'bytes', name: url});
      return data;
    },
  };
}

/**
 * Opens a tfjs-format model at a URL (see the module comment): its manifest now, its weights on
 * loadInto. `fetchFn` fetches over http (the Hub's: a token and the Cache API, src/browser/hub.ts).
 */
export async function openTfjsUrl(url: string, fetchFn: typeof fetch = fetch): Promise<CheckpointReader> {
  const a = STORE.test(url) ? await storeArtifacts(url) : await httpArtifacts(url, fetchFn);
  const plan = planWeights(a.where, a.groups, a.metadata, null);
  checkTensorList(
    a.config,
    a.where,
    new Map(plan.tensors.map((t) => [t.name.replace('/', '.'), {shape: t.shape, file: a.where}])),
  );
  const stored = storedSpecOf(a.where, plan, a.metadata);
  return {
    where: a.where,
    config: a.config,
    storedDtype: stored.dtype,
    storedGroupSize: stored.groupSize,
    storedZeroPoints: stored.zeroPoints,
    float32Bytes: float32BytesOf(plan),
    loadInto: (model, onProgress) => loadInto(a, model, onProgress),
  };
}

async function loadInto(a: Artifacts, model: ModelParameters, onProgress?: OnProgress): Promise<void> {
  const {byName, shapes} = modelTensors(model);
  const plan: WeightPlan = planWeights(a.where, a.groups, a.metadata, shapes);
  const starts = plan.groupBytes.map((_, g) => plan.groupBytes.slice(0, g).reduce((x, y) => x + y, 0));
  const bytes = await a.weights(
    plan.groupBytes.reduce((x, y) => x + y, 0),
    onProgress,
  );
  for (const t of plan.tensors) {
    const stored = readStored(t, (ref) =>
      bytes.subarray(starts[ref.group] + ref.offset, starts[ref.group] + ref.offset + ref.length),
    );
    writeStored(byName.get(t.name)!, stored);
  }
}
