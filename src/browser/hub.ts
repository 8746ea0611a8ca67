/**
 * Hub ids in the browser bundle (scripts/build_browser.mjs puts this module where
 * converters/hub.ts was; same exports): 'owner/name' loads the tfjs layout (model.json + shards)
 * from `${hubUrl}/owner/name/resolve/REV/FILE`, and the tokenizer files from the same place,
 * keeping what it fetched in the Cache API ('griffin-hub') where the page has one.
 *   const url = await resolveSource('owner/name', {weights: true}, {revision: 'main'});  // .../resolve/<commit>/model.json
 *   const bytes = await hubFile('owner/name', 'tokenizer.json', {}, true);             // null when the repo lacks it
 *
 * In a page every string is a URL, so a Hub id is exactly `owner/name` (no scheme, no leading
 * `/` or `.`, no trailing `/`); write './owner/name' or 'owner/name/' for a folder beside the
 * page. The revision is resolved to its commit through X-Repo-Commit, and files are kept under
 * their commit URL, which never changes; a revision's own URL is kept too, so that a page loads
 * the last commit it saw when the network is down. No HF_* variables here: pass the options.
 */
import {HubError, type HubOptions, type HubWant, looksLikeHubId} from '../../converters/hub_ids';

export {HUB_REPO_ID, HubError, type HubOptions, type HubWant} from '../../converters/hub_ids';

export function isHubId(source: string): boolean {
  return looksLikeHubId(source);
}

const CACHE = 'griffin-hub';
const COMMIT = /^[0-9a-f]{40}$/;

const hubUrlOf = (opts: HubOptions) => (opts.hubUrl ?? 'https://huggingface.co').replace(/\/+$/, '');
const fileUrl = (opts: HubOptions, repo: string, rev: string, file: string) =>
  `${hubUrlOf(opts)}/${repo}/resolve/${encodeURIComponent(rev)}/${file}`;

async function openCache(): Promise<Cache | null> {
  try {
    return typeof caches === 'undefined' ? null : await caches.open(CACHE);
  } catch {
    return null; // an opaque origin, a private window with storage off
  }
}

/**
 * fetch for the Hub's resolve URLs: the token on every request to the Hub, commit URLs from the
 * cache first, everything fetched kept (a revision's URL too), and the cache again when the
 * network is down. Other URLs pass through.
 */
export function hubFetch(opts: HubOptions): typeof fetch {
  const base = `${hubUrlOf(opts)}/`;
  return async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.startsWith(base)) return fetch(input, init);
    const cache = await openCache();
    const immutable = /\/resolve\/[0-9a-f]{40}\//.test(url);
    if (cache != null && (immutable || opts.offline)) {
      const hit = await cache.match(url);
      if (hit != null) return hit;
    }
    if (opts.offline) throw new HubError(`${url}: not in the page's cache (offline)`);
    let res: Response;
    try {
      res = await fetch(url, {...init, headers: opts.token ? {Authorization: `Bearer ${opts.token}`} : {}});
    } catch (e) {
      const hit = await cache?.match(url);
      if (hit != null) return hit;
      throw new HubError(`cannot reach ${hubUrlOf(opts)} (${(e as Error).message})`);
    }
    // Kept while the caller reads it (a clone); a full quota only loses the cache.
    if (res.ok && res.status === 200 && cache != null) cache.put(url, res.clone()).catch(() => undefined);
    return res;
  };
}

/** The one-line error of a failed resolve request. */
function failure(res: Response, repo: string, file: string, opts: HubOptions): HubError {
  const code = res.headers.get('x-error-code');
  const rev = opts.revision ?? 'main';
  if (code === 'RevisionNotFound') return new HubError(`${repo}: revision ${JSON.stringify(rev)} not found`);
  if (code === 'EntryNotFound') return new HubError(`${repo}: no ${file} at ${rev}`);
  if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound'))
    return new HubError(
      `${repo}: access denied (HTTP ${res.status}): the repo is gated or private; accept its licence at ${hubUrlOf(opts)}/${repo} and pass {token}`,
    );
  if (code === 'RepoNotFound') return new HubError(`${repo}: no such model on ${hubUrlOf(opts)}`);
  // (A Hub that does not expose X-Error-Code to pages cannot tell these apart.)
  if (res.status === 404)
    return new HubError(
      `${repo}: HTTP 404 for ${file} at ${rev} (no such model on ${hubUrlOf(opts)}, or no such file)`,
    );
  return new HubError(`${repo}: ${file}: HTTP ${res.status}`);
}

/**
 * The bytes of one file of a repo at opts.revision, or null when the repo lacks it (and
 * `optional`). Also returns the URL of the file at its commit, when the Hub says which.
 */
export async function hubFile(
  repo: string,
  file: string,
  opts: HubOptions,
  optional = false,
): Promise<{bytes: Uint8Array; commitUrl: string} | null> {
  const rev = opts.revision ?? 'main';
  const f = hubFetch(opts);
  const res = await f(fileUrl(opts, repo, rev, file));
  if (!res.ok) {
    if (optional && res.status === 404 && res.headers.get('x-error-code') !== 'RepoNotFound') return null;
    throw failure(res, repo, file, opts);
  }
  const bytes = new Uint8Array(await res.clone().arrayBuffer());
  const commit = res.headers.get('x-repo-commit');
  let commitUrl = fileUrl(opts, repo, rev, file);
  if (commit != null && COMMIT.test(commit)) {
    commitUrl = fileUrl(opts, repo, commit, file);
    const cache = await openCache();
    await cache?.put(commitUrl, res).catch(() => undefined);
  }
  return {bytes, commitUrl};
}

/** The snapshot's URL: model.json at the revision's commit (weights), or the folder holding the tokenizer. */
export async function hubSnapshot(repo: string, want: HubWant, opts: HubOptions = {}): Promise<string> {
  const file = want.weights ? 'model.json' : 'tokenizer.json';
  const got = await hubFile(repo, file, opts, !want.weights).catch((e: Error) => {
    if (want.weights && e.message.startsWith(`${repo}: no model.json at `))
      throw new HubError(
        `${repo}: no model.json: a page loads the tfjs layout (griffin convert --format tfjs, then upload it)`,
      );
    throw e;
  });
  if (got != null) return want.weights ? got.commitUrl : got.commitUrl.replace(/[^/]*$/, '');
  return fileUrl(opts, repo, opts.revision ?? 'main', '');
}

/** A URL as given, or the URL of a Hub id's model.json at its commit. */
export async function resolveSource(source: string, want: HubWant, opts: HubOptions = {}): Promise<string> {
  return isHubId(source) ? hubSnapshot(source, want, opts) : source;
}
