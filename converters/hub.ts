/**
 * Hugging Face Hub ids ('owner/name') as model and tokenizer sources: the files a load needs are
 * downloaded with @huggingface/hub into Python's huggingface_hub cache and read from there, so
 * Python and this package share one cache (`<cache>/models--owner--name/{blobs,refs,snapshots}`).
 *   const dir = await hubSnapshot('owner/name', {weights: true, tokenizer: true}, {revision: 'main'});
 *   const local = await resolveSource('owner/name', {weights: true}, {offline: true});  // a path as given, else the Hub
 *
 * The layout, as huggingface_hub writes it: blobs/<etag> (the sha256 of an LFS file, the git blob
 * id of any other), snapshots/<commit>/<file> a relative symlink to its blob, refs/<revision> the
 * commit a branch or tag stood at. A blob is written as blobs/<etag>.incomplete, resumed with a
 * Range request after an interruption, checked (size; sha256 for LFS files) and renamed into place,
 * so a finished-looking file is always whole. Settings: the options, else HF_TOKEN (or the token
 * file `huggingface-cli login` writes), HF_ENDPOINT, HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE=1.
 * Without network, a revision already in the cache loads from it, as in Python.
 */
import {downloadFile, HubApiError, type ListFileEntry, listFiles, modelInfo} from '@huggingface/hub';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type {OnProgress} from '../src/util/progress';
import {HubError, type HubOptions, type HubWant, looksLikeHubId} from './hub_ids';

export {HUB_REPO_ID, HubError, type HubOptions, type HubWant} from './hub_ids';

/** Whether `source` names a Hub repo rather than a local path: owner/name, and no such path exists. */
export function isHubId(source: string): boolean {
  return looksLikeHubId(source) && !fs.existsSync(source);
}

const COMMIT = /^[0-9a-f]{40}$/;
const WEIGHT_FILES = ['config.json', 'model.safetensors.index.json', 'model.json', 'adapter_config.json'];
const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model'];
const TOKENIZER_CONFIG = 'tokenizer_config.json';

const truthy = (v: string | undefined) => v != null && ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());

interface Settings {
  hubUrl: string;
  cacheDir: string;
  token?: string;
  offline: boolean;
  revision: string;
}

function hfHome(): string {
  const env = process.env;
  return env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
}

function readTokenFile(): string | undefined {
  const file = process.env.HF_TOKEN_PATH || path.join(hfHome(), 'token');
  try {
    const t = fs.readFileSync(file, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
}

/** The options, completed from the environment as huggingface_hub reads it. */
export function hubSettings(opts: HubOptions = {}): Settings {
  const env = process.env;
  // An empty variable counts as unset, as in Python.
  const hubUrl = (opts.hubUrl || env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
  const cacheDir = opts.cacheDir || env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || path.join(hfHome(), 'hub');
  const token = opts.token ?? (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined) ?? readTokenFile();
  const offline = opts.offline ?? truthy(env.HF_HUB_OFFLINE);
  const revision = opts.revision ?? 'main';
  if (revision === '' || revision.split('/').some((p) => p === '' || p === '.' || p === '..'))
    throw new HubError(`revision ${JSON.stringify(revision)} is not a branch, tag or commit`);
  return {hubUrl, cacheDir, token, offline, revision};
}

/** The repo's folder in the cache: <cache>/models--owner--name (huggingface_hub's naming). */
export function repoCacheDir(repo: string, cacheDir: string): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

/** Reads a JSON file of a snapshot (an index, a tfjs manifest), naming the repo on failure. */
function readJson(file: string, repo: string): Record<string, unknown> {
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (j == null || typeof j !== 'object' || Array.isArray(j)) throw new Error('not a JSON object');
    return j;
  } catch (e) {
    throw new HubError(`${repo}: ${path.basename(file)} is not valid JSON (${(e as Error).message})`);
  }
}

/** The weight files a config-level file names: an index's shards, a tfjs manifest's paths. */
function namedWeights(snapshot: string, file: string, repo: string): string[] {
  const j = readJson(path.join(snapshot, file), repo);
  if (file === 'model.safetensors.index.json') {
    const map = j.weight_map;
    if (map == null || typeof map !== 'object') throw new HubError(`${repo}: ${file} has no weight_map`);
    return [...new Set(Object.values(map as Record<string, string>))];
  }
  const groups = j.weightsManifest;
  if (!Array.isArray(groups)) throw new HubError(`${repo}: ${file} has no weightsManifest`);
  return groups.flatMap((g: {paths?: string[]}) => g.paths ?? []);
}

/** The files of `want` among a repo's top-level files (`has`), before the index / manifest is read. */
function firstFiles(has: (f: string) => boolean, names: string[], want: HubWant): string[] {
  const out: string[] = [];
  if (want.weights) {
    out.push(...WEIGHT_FILES.filter(has));
    if (has('adapter_config.json') && has(ADAPTER_WEIGHTS)) out.push(ADAPTER_WEIGHTS);
    // Unsharded safetensors have no index: all of them (an adapter's own file excepted).
    if (has('config.json') && !has('model.safetensors.index.json'))
      out.push(...names.filter((f) => f.endsWith('.safetensors') && f !== ADAPTER_WEIGHTS));
  }
  if (want.tokenizer) {
    const tok = TOKENIZER_FILES.find(has);
    if (tok != null) out.push(tok);
    if (has(TOKENIZER_CONFIG)) out.push(TOKENIZER_CONFIG);
  }
  return out;
}

/** Whether a cached snapshot holds everything `want` needs, judged from the files on disk. */
function cachedComplete(snapshot: string, want: HubWant, repo: string): boolean {
  if (!fs.existsSync(snapshot)) return false;
  const has = (f: string) => fs.existsSync(path.join(snapshot, f));
  if (want.weights) {
    if (!['config.json', 'model.json', 'adapter_config.json'].some(has)) return false;
    for (const f of ['model.safetensors.index.json', 'model.json'])
      if (has(f) && !namedWeights(snapshot, f, repo).every(has)) return false;
    if (has('config.json') && !has('model.safetensors.index.json')) {
      if (!fs.readdirSync(snapshot).some((f) => f.endsWith('.safetensors') && f !== ADAPTER_WEIGHTS)) return false;
    }
    if (has('adapter_config.json') && !has('config.json') && !has(ADAPTER_WEIGHTS)) return false;
  }
  if (want.tokenizer && !TOKENIZER_FILES.some(has)) return false;
  return true;
}

/** The commit a revision stands at in the cache (refs/<revision>), or null. */
function cachedCommit(repoDir: string, revision: string): string | null {
  if (COMMIT.test(revision)) return revision;
  try {
    const c = fs.readFileSync(path.join(repoDir, 'refs', revision), 'utf8').trim();
    return COMMIT.test(c) ? c : null;
  } catch {
    return null;
  }
}

/** Writes a file via a temp file and a rename (refs, symlinks' stand-ins): never half-written. */
function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), {recursive: true});
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** Points snapshots/<commit>/<file> at its blob: a relative symlink as Python makes, or a copy where links fail. */
function linkBlob(blob: string, pointer: string): void {
  fs.mkdirSync(path.dirname(pointer), {recursive: true});
  const tmp = `${pointer}.${process.pid}.tmp`;
  fs.rmSync(tmp, {force: true});
  try {
    fs.symlinkSync(path.relative(path.dirname(pointer), blob), tmp);
  } catch {
    fs.copyFileSync(blob, tmp);
  }
  fs.renameSync(tmp, pointer);
}

/** A network failure (nothing answered), as opposed to an HTTP error. */
class NetworkError extends Error {}

/**
 * The one-line error for a failed Hub call. The Hub says what went wrong in X-Error-Code
 * (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound), which `fetch` below records.
 */
function hubFailure(e: unknown, repo: string, s: Settings, code: string | null): Error {
  if (e instanceof HubError || e instanceof NetworkError) return e;
  const page = `${s.hubUrl}/${repo}`;
  if (e instanceof HubApiError) {
    const status = e.statusCode;
    if (code === 'RevisionNotFound')
      return new HubError(`${repo}: revision ${JSON.stringify(s.revision)} not found on ${s.hubUrl}`);
    if (code === 'GatedRepo' || ((status === 401 || status === 403) && code !== 'RepoNotFound'))
      return new HubError(
        s.token == null
          ? `${repo}: access denied (HTTP ${status}): the repo is gated or private; accept its licence at ${page} and set HF_TOKEN to a token of yours`
          : `${repo}: access denied (HTTP ${status}) with the token given: accept the repo's licence at ${page}, or use a token that can read it`,
      );
    if (code === 'RepoNotFound' || status === 404)
      return new HubError(
        `${repo}: no such model on ${s.hubUrl} and no such local directory${s.token == null ? ' (a private repo needs HF_TOKEN)' : ''}`,
      );
    return new HubError(`${repo}: the Hub answered HTTP ${status} (${e.message.split('\n')[0]})`);
  }
  const msg = (e as Error)?.message ?? String(e);
  if (/access token must start with/i.test(msg)) return new HubError(`${repo}: the token is not a Hub token (hf_...)`);
  return new HubError(`${repo}: ${msg.split('\n')[0]}`);
}

/** fetch, recording the Hub's X-Error-Code and telling a network failure apart. */
function recordingFetch(s: Settings): {fetch: typeof fetch; lastCode: () => string | null} {
  let code: string | null = null;
  const f: typeof fetch = async (input, init) => {
    let res: Response;
    try {
      res = await fetch(input, init);
    } catch (e) {
      const cause = (e as {cause?: {code?: string; message?: string}}).cause;
      throw new NetworkError(`cannot reach ${s.hubUrl} (${cause?.code ?? cause?.message ?? (e as Error).message})`);
    }
    code = res.ok ? null : res.headers.get('x-error-code');
    return res;
  };
  return {fetch: f, lastCode: () => code};
}

interface Job {
  file: string;
  size: number;
  etag: string;
  sha256?: string;
}

/**
 * Downloads one file into blobs/<etag>: resumed from blobs/<etag>.incomplete, checked, renamed.
 * onBytes(n) reports the bytes of this file written so far (counting a resumed part).
 */
async function downloadBlob(
  repo: string,
  commit: string,
  job: Job,
  blob: string,
  s: Settings,
  f: typeof fetch,
  onBytes: (n: number) => void,
): Promise<void> {
  const part = `${blob}.incomplete`;
  fs.mkdirSync(path.dirname(blob), {recursive: true});
  let have = fs.existsSync(part) ? fs.statSync(part).size : 0;
  if (have > job.size) {
    fs.rmSync(part);
    have = 0;
  }
  const hash = job.sha256 != null ? crypto.createHash('sha256') : null;
  if (hash != null && have > 0) for await (const c of fs.createReadStream(part)) hash.update(c as Buffer);
  onBytes(have);
  if (have < job.size) {
    const whole = await downloadFile({
      repo: {type: 'model', name: repo},
      path: job.file,
      revision: commit,
      hubUrl: s.hubUrl,
      accessToken: s.token,
      fetch: f,
    });
    if (whole == null) throw new HubError(`${repo}: ${job.file} is listed but cannot be downloaded (HTTP 404)`);
    const fh = await fs.promises.open(part, 'a');
    try {
      const body = (have > 0 ? whole.slice(have) : whole).stream() as unknown as AsyncIterable<Uint8Array>;
      for await (const chunk of body) {
        await fh.write(chunk);
        hash?.update(chunk);
        have += chunk.length;
        onBytes(have);
      }
    } catch (e) {
      if (e instanceof HubApiError) throw e;
      const why = (e as Error)?.message ?? String(e);
      throw new HubError(
        `${repo}: download of ${job.file} interrupted at ${have} of ${job.size} bytes (${why}); run again to resume`,
      );
    } finally {
      await fh.close();
    }
  }
  const got = fs.statSync(part).size;
  if (got !== job.size) {
    if (got > job.size) fs.rmSync(part);
    throw new HubError(
      `${repo}: ${job.file} arrived with ${got} bytes, the Hub lists ${job.size}${got < job.size ? '; run again to resume' : ''}`,
    );
  }
  if (hash != null) {
    const digest = hash.digest('hex');
    if (digest !== job.sha256) {
      fs.rmSync(part);
      throw new HubError(`${repo}: ${job.file} has sha256 ${digest}, the Hub lists ${job.sha256} (removed; run again)`);
    }
  }
  fs.renameSync(part, blob);
}

/** A tree entry as a download job: its etag is the blob's name (LFS: the sha256; else the git blob id). */
function jobOf(e: ListFileEntry, repo: string): Job {
  if (e.lfs != null) return {file: e.path, size: e.lfs.size, etag: e.lfs.oid, sha256: e.lfs.oid};
  if (e.oid == null) throw new HubError(`${repo}: the Hub lists ${e.path} without an id`);
  return {file: e.path, size: e.size, etag: e.oid};
}

/** The online path: resolve the revision, list the top-level files, fetch what `want` needs. */
async function download(repo: string, want: HubWant, s: Settings, onProgress?: OnProgress): Promise<string> {
  const repoDir = repoCacheDir(repo, s.cacheDir);
  const {fetch: f, lastCode} = recordingFetch(s);
  try {
    const info = await modelInfo({
      name: repo,
      revision: s.revision,
      hubUrl: s.hubUrl,
      accessToken: s.token,
      additionalFields: ['sha'],
      fetch: f,
    });
    const commit = (info as {sha?: string}).sha;
    if (commit == null || !COMMIT.test(commit))
      throw new HubError(`${repo}: the Hub gave no commit for revision ${JSON.stringify(s.revision)}`);
    if (commit !== s.revision) writeAtomic(path.join(repoDir, 'refs', s.revision), commit);
    const snapshot = path.join(repoDir, 'snapshots', commit);
    const entries = new Map<string, ListFileEntry>();
    for await (const e of listFiles({
      repo: {type: 'model', name: repo},
      revision: commit,
      hubUrl: s.hubUrl,
      accessToken: s.token,
      fetch: f,
    })) {
      if (e.type === 'file') entries.set(e.path, e);
    }
    const names = [...entries.keys()];
    const has = (name: string) => entries.has(name);
    if (want.weights && !['config.json', 'model.json', 'adapter_config.json'].some(has))
      throw new HubError(
        `${repo}: not a model this package reads (no config.json, model.json or adapter_config.json at ${s.revision})`,
      );
    if (want.tokenizer && !want.weights && !TOKENIZER_FILES.some(has))
      throw new HubError(`${repo}: no tokenizer.json or tokenizer.model at ${s.revision}`);

    const fetchAll = async (files: string[]) => {
      const jobs = files
        .filter((file) => !fs.existsSync(path.join(snapshot, file)))
        .map((file) => {
          const e = entries.get(file);
          if (e == null) throw new HubError(`${repo}: ${file} is named by the checkpoint but not in the repo`);
          return jobOf(e, repo);
        });
      const total = jobs.reduce((n, j) => n + j.size, 0);
      let done = 0;
      for (const job of jobs) {
        const blob = path.join(repoDir, 'blobs', job.etag);
        if (!fs.existsSync(blob) || fs.statSync(blob).size !== job.size) {
          await downloadBlob(repo, commit, job, blob, s, f, (n) =>
            onProgress?.({loaded: done + n, total, unit: 'bytes', name: job.file}),
          );
        }
        done += job.size;
        onProgress?.({loaded: done, total, unit: 'bytes', name: job.file});
        linkBlob(blob, path.join(snapshot, job.file));
      }
    };
    await fetchAll(firstFiles(has, names, want));
    // The shards an index or a tfjs manifest names, once it is here.
    if (want.weights)
      await fetchAll(
        ['model.safetensors.index.json', 'model.json'].filter(has).flatMap((m) => namedWeights(snapshot, m, repo)),
      );
    fs.mkdirSync(snapshot, {recursive: true});
    return snapshot;
  } catch (e) {
    throw hubFailure(e, repo, s, lastCode());
  }
}

/**
 * The snapshot folder holding the files of `want` for a Hub repo: from the cache when the revision
 * is a commit already there or when offline (or when the Hub cannot be reached), else downloaded.
 */
export async function hubSnapshot(repo: string, want: HubWant, opts: HubOptions = {}): Promise<string> {
  const s = hubSettings(opts);
  const repoDir = repoCacheDir(repo, s.cacheDir);
  const fromCache = () => {
    const commit = cachedCommit(repoDir, s.revision);
    const snapshot = commit == null ? null : path.join(repoDir, 'snapshots', commit);
    return snapshot != null && cachedComplete(snapshot, want, repo) ? snapshot : null;
  };
  if (COMMIT.test(s.revision) || s.offline) {
    const hit = fromCache();
    if (hit != null) return hit;
    if (s.offline)
      throw new HubError(
        `${repo}: not in the cache at ${s.revision} (${repoDir}) and HF_HUB_OFFLINE is set; load it once online`,
      );
  }
  try {
    return await download(repo, want, s, opts.onProgress);
  } catch (e) {
    if (!(e instanceof NetworkError)) throw e;
    const hit = fromCache();
    if (hit != null) return hit;
    throw new HubError(`${repo}: ${e.message}, and revision ${s.revision} is not in the cache (${repoDir})`);
  }
}

/**
 * fetch with the token on requests to the Hub (for a URL source on the Hub; Hub ids are
 * downloaded into the cache instead). The browser's version also caches (src/browser/hub.ts).
 */
export function hubFetch(opts: HubOptions = {}): typeof fetch {
  const s = hubSettings(opts);
  const base = `${s.hubUrl}/`;
  return (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (s.token == null || !url.startsWith(base)) return fetch(input, init);
    return fetch(input, {
      ...init,
      headers: {...(init?.headers as Record<string, string>), Authorization: `Bearer ${s.token}`},
    });
  };
}

/** A local path as given (it always wins), or the snapshot of a Hub id. */
export async function resolveSource(source: string, want: HubWant, opts: HubOptions = {}): Promise<string> {
  return isHubId(source) ? hubSnapshot(source, want, opts) : source;
}
