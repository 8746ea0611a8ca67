/**
 * A fake Hugging Face Hub for tests (node:http on localhost): the routes @huggingface/hub and
 * huggingface_hub call, with the Hub's headers, so loaders run against it as against the real one.
 *   const hub = await startFakeHub({'me/tiny': {main: {'config.json': bytes}}});   // HF_ENDPOINT=hub.url
 *   hub.requests;  hub.cutNext('model.safetensors', 1000);  hub.corruptNext('model.safetensors');  await hub.close();
 *
 * Routes: GET /api/models/{repo}/revision/{rev} (model info, `sha` = the commit), GET
 * /api/models/{repo}/tree/{rev} (files with git oid, size, and lfs {oid: sha256, size} for LFS
 * files), GET|HEAD /{repo}/resolve/{rev}/{file} (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size,
 * Content-Length, Accept-Ranges, Range -> 206 + Content-Range). Errors carry X-Error-Code as the
 * Hub sends it: RepoNotFound (404), GatedRepo (401 without the repo's token), RevisionNotFound,
 * EntryNotFound. Which files are LFS follows the usual .gitattributes (*.safetensors, *.bin, *.model).
 */
import * as crypto from 'crypto';
import * as http from 'http';
import type {AddressInfo} from 'net';

/** A repo: revisions (branch or tag names) to the files at them; each revision is one commit. */
export type FakeRepo = Record<string, Record<string, Uint8Array>> & {};

export interface FakeRepoOptions {
  /** Requests must carry `Authorization: Bearer <token>` (a gated repo). */
  token?: string;
}

export interface FakeHub {
  url: string;
  /** Every request: method, path (with query), Range and Authorization headers. */
  requests: {method: string; url: string; range?: string; auth?: string}[];
  /** The commit a revision of a repo stands at. */
  commit(repo: string, revision: string): string;
  /** The next GET of this file sends `bytes` bytes of it, then drops the connection. */
  cutNext(file: string, bytes: number): void;
  /** The next GET of this file sends it with its last byte changed (same size). */
  corruptNext(file: string): void;
  close(): Promise<void>;
}

export const gitBlobId = (b: Uint8Array) =>
  crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256 = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
export const isLfs = (file: string) => /\.(safetensors|bin|model)$/.test(file);

interface Commit {
  sha: string;
  files: Record<string, Uint8Array>;
}

export async function startFakeHub(
  repos: Record<string, FakeRepo>,
  options: Record<string, FakeRepoOptions> = {},
): Promise<FakeHub> {
  // One commit per revision; its hash is derived from the repo, revision and content (stable across runs).
  const commits = new Map<string, Map<string, Commit>>();
  for (const [repo, revs] of Object.entries(repos)) {
    const m = new Map<string, Commit>();
    for (const [rev, files] of Object.entries(revs)) {
      const h = crypto.createHash('sha1').update(`${repo}@${rev}`);
      for (const [f, b] of Object.entries(files).sort()) h.update(f).update(b);
      const c = {sha: h.digest('hex'), files};
      m.set(rev, c);
      m.set(c.sha, c);
    }
    commits.set(repo, m);
  }
  const requests: FakeHub['requests'] = [];
  const cuts = new Map<string, number>();
  const corrupt = new Set<string>();

  const fail = (res: http.ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, {'Content-Type': 'application/json', 'X-Error-Code': code, 'X-Error-Message': message});
    res.end(JSON.stringify({error: message}));
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push({
      method: req.method ?? '',
      url: url.pathname + url.search,
      range: req.headers.range,
      auth: req.headers.authorization,
    });
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader(
      'Access-Control-Expose-Headers',
      'X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size, Content-Range, Content-Length, X-Error-Code',
    );
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Headers': 'Authorization, Range',
        'Access-Control-Allow-Methods': 'GET, HEAD',
      });
      res.end();
      return;
    }
    const p = decodeURIComponent(url.pathname);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)\/?$/.exec(p);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p);
    const repo = api?.[1] ?? resolve?.[1];
    const rev = api?.[3] ?? resolve?.[2];
    if (repo == null || rev == null) return fail(res, 404, 'NotFound', 'no such route');
    const revs = commits.get(repo);
    if (revs == null) return fail(res, 404, 'RepoNotFound', 'Repository not found');
    const token = options[repo]?.token;
    if (token != null && req.headers.authorization !== `Bearer ${token}`)
      return fail(res, 401, 'GatedRepo', `Access to model ${repo} is restricted. You must have access to it.`);
    const c = revs.get(rev);
    if (c == null) return fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);

    if (api?.[2] === 'revision') {
      res.writeHead(200, {'Content-Type': 'application/json'});
      res.end(
        JSON.stringify({
          _id: crypto.createHash('md5').update(repo).digest('hex').slice(0, 24),
          id: repo,
          sha: c.sha,
          private: false,
          gated: token != null ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2026-01-01T00:00:00.000Z',
          tags: [],
          siblings: Object.keys(c.files).map((rfilename) => ({rfilename})),
        }),
      );
      return;
    }
    if (api?.[2] === 'tree') {
      const list = Object.entries(c.files).map(([file, b]) => {
        // An LFS file's git object is its pointer; the tree lists the pointer's id and the real size.
        const pointer = Buffer.from(
          `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\nsize ${b.length}\n`,
        );
        return {
          type: 'file',
          oid: gitBlobId(isLfs(file) ? pointer : b),
          size: b.length,
          path: file,
          ...(isLfs(file) ? {lfs: {oid: sha256(b), size: b.length, pointerSize: pointer.length}} : {}),
        };
      });
      res.writeHead(200, {'Content-Type': 'application/json'});
      res.end(JSON.stringify(list));
      return;
    }
    const file = resolve![3];
    const body = c.files[file];
    if (body == null) return fail(res, 404, 'EntryNotFound', `${file} does not exist on "${rev}"`);
    const etag = isLfs(file) ? sha256(body) : gitBlobId(body);
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/octet-stream',
      'X-Repo-Commit': c.sha,
      ETag: `"${etag}"`,
      'Accept-Ranges': 'bytes',
      ...(isLfs(file) ? {'X-Linked-Etag': `"${etag}"`, 'X-Linked-Size': String(body.length)} : {}),
    };
    let start = 0,
      end = body.length - 1,
      status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m != null) {
      start = Number(m[1]);
      end = m[2] === '' ? body.length - 1 : Math.min(Number(m[2]), body.length - 1);
      if (start > end) {
        res.writeHead(416, {'Content-Range': `bytes */${body.length}`});
        res.end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${body.length}`;
    }
    headers['Content-Length'] = String(end - start + 1);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = cuts.get(file);
    // A probe (Range: bytes=0-0) is not the download; the cut applies to a real transfer.
    if (cut != null && end - start + 1 > 1) {
      cuts.delete(file);
      res.write(body.subarray(start, start + cut), () => {
        setTimeout(() => res.destroy(), 20);
      });
      return;
    }
    const out = Buffer.from(body.subarray(start, end + 1));
    if (out.length > 1 && corrupt.delete(file)) out[out.length - 1] ^= 0xff;
    res.end(out);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const {port} = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    commit: (repo, revision) => commits.get(repo)!.get(revision)!.sha,
    cutNext: (file, bytes) => cuts.set(file, bytes),
    corruptNext: (file) => corrupt.add(file),
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
