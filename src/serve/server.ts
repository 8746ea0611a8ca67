/**
 * The OpenAI-compatible HTTP server (node:http): POST /v1/chat/completions and /v1/completions
 * (server-sent events with `stream: true`), GET /v1/models and GET /health, over one Scheduler.
 *   const srv = await startServer({model, tok, modelId: 'griffin-small', port: 0});
 *   console.log(srv.url);  await srv.close();
 *
 * Safety: binds 127.0.0.1 unless told otherwise; with apiKey, /v1/* needs `Authorization: Bearer
 * KEY` (401); bodies past maxBodyBytes get 413, prompts past the token limit 400, a full queue
 * 429 with Retry-After. A bad request gets OpenAI's error body and harms no other request; a
 * client that goes away mid-answer frees its slot at the next step.
 */
import {timingSafeEqual} from 'crypto';
import * as http from 'http';
import type {AddressInfo} from 'net';
import type {CausalLMCore} from '../core/model';
import type {GemmaTokenizer} from '../tokenizer';
import {ApiError, errorResponse} from './api_error';
import {Reply} from './format';
import {
  type CompletionSpec,
  DEFAULT_REQUEST_LIMITS,
  parseChatRequest,
  parseCompletionRequest,
  type RequestLimits,
} from './requests';
import {Scheduler} from './scheduler';

export interface ServerOptions {
  model: CausalLMCore;
  tok: GemmaTokenizer;
  /** The name /v1/models lists and answers carry. */
  modelId: string;
  host?: string;
  /** 0: any free port (see `port` on the result). */
  port?: number;
  maxBatch?: number;
  maxQueue?: number;
  limits?: Partial<RequestLimits>;
  maxBodyBytes?: number;
  apiKey?: string | null;
  /** Ids that end a sequence (default: the config's eos and <end_of_turn>; benchmarks pass []). */
  eosIds?: number[];
}

export interface RunningServer {
  url: string;
  host: string;
  port: number;
  scheduler: Scheduler;
  server: http.Server;
  close(): Promise<void>;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
export const DEFAULT_MAX_BATCH = 8;
export const DEFAULT_MAX_QUEUE = 64;
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendError(res: http.ServerResponse, e: unknown): void {
  const {status, headers, body} = errorResponse(e);
  sendJson(res, status, body, headers);
}

/** The body as JSON, refusing more than `limit` bytes (413) and malformed JSON (400). */
function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit)
    return Promise.reject(new ApiError(413, `the request body is larger than ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0,
      done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        reject(new ApiError(413, `the request body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(new ApiError(400, `the body is not valid JSON: ${(e as Error).message}`, {code: 'invalid_json'}));
      }
    });
    req.on('error', (e) => {
      if (!done) reject(e);
      done = true;
    });
  });
}

function authorized(req: http.IncomingMessage, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (m == null) return false;
  const a = Buffer.from(m[1].trim()),
    b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const {model, tok, modelId} = opts;
  const limits: RequestLimits = {...DEFAULT_REQUEST_LIMITS, ...opts.limits};
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  limits.maxN = Math.min(limits.maxN, maxBatch);
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const scheduler = new Scheduler(model, tok, {
    maxBatch,
    maxQueue: opts.maxQueue ?? DEFAULT_MAX_QUEUE,
    eosIds: opts.eosIds,
  });
  const created = Math.floor(Date.now() / 1000);

  async function complete(req: http.IncomingMessage, res: http.ServerResponse, chat: boolean): Promise<void> {
    const body = await readJson(req, maxBody);
    const spec: CompletionSpec = chat ? parseChatRequest(body, tok, limits) : parseCompletionRequest(body, tok, limits);
    const reply = new Reply(spec, tok, spec.model ?? modelId);
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort();
    });
    const write = (obj: unknown) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const done = scheduler.submit({
      promptIds: spec.promptIds,
      n: spec.n,
      maxTokens: spec.maxTokens,
      temperature: spec.temperature,
      topP: spec.topP,
      topK: spec.topK,
      seed: spec.seed,
      stop: spec.stop,
      logprobs: spec.logprobs,
      signal: ac.signal,
      onEvent: spec.stream ? (ev) => reply.chunks(ev).forEach(write) : (ev) => void reply.chunks(ev),
    });
    if (!spec.stream) {
      await done;
      if (!ac.signal.aborted) sendJson(res, 200, reply.final());
      return;
    }
    res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive'});
    reply.opening().forEach(write);
    try {
      await done;
    } catch (e) {
      write(errorResponse(e).body);
    }
    if (spec.includeUsage) write(reply.usageChunk());
    if (!res.destroyed) res.end('data: [DONE]\n\n');
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
    const route = (method: string) => {
      if (req.method !== method)
        throw new ApiError(405, `${req.method} is not allowed on ${url} (use ${method})`, {code: 'method_not_allowed'});
    };
    if (url === '/health') {
      route('GET');
      return sendJson(res, 200, {status: 'ok', model: modelId, ...scheduler.stats});
    }
    if (!url.startsWith('/v1/')) throw new ApiError(404, `no such endpoint: ${url}`, {code: 'not_found'});
    if (opts.apiKey && !authorized(req, opts.apiKey))
      throw new ApiError(401, 'a valid API key is required (Authorization: Bearer KEY)', {code: 'invalid_api_key'});
    switch (url) {
      case '/v1/models':
        route('GET');
        return sendJson(res, 200, {
          object: 'list',
          data: [{id: modelId, object: 'model', created, owned_by: 'griffin'}],
        });
      case `/v1/models/${modelId}`:
        route('GET');
        return sendJson(res, 200, {id: modelId, object: 'model', created, owned_by: 'griffin'});
      case '/v1/chat/completions':
        route('POST');
        return complete(req, res, true);
      case '/v1/completions':
        route('POST');
        return complete(req, res, false);
      default:
        throw new ApiError(404, `no such endpoint: ${url}`, {code: 'not_found'});
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      // A refused body: stop reading it, answer, then close the connection.
      if (e instanceof ApiError && e.status === 413) res.setHeader('Connection', 'close');
      sendError(res, e);
    });
  });
  const host = opts.host ?? DEFAULT_HOST;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    host,
    port,
    scheduler,
    server,
    async close() {
      await scheduler.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
