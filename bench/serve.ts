/**
 * `griffin serve` under load: N concurrent streaming clients against one server, for each N of
 * --clients, next to a single stream. Per level: total completion tokens/s, time to first token
 * (TTFT) and per-token latency (a request's (last chunk - first chunk) / (tokens - 1)), p50/p99,
 * the gaps between chunks (ITL), the batch's decode pace (clients / per-token p50: total tok/s
 * also counts the prefills) and, from the server's /health, the rows per decode step, the dead
 * engine rows per step and the engines built (grows and shrinks); for --config 2b --dtype bfloat16
 * the goal at 32 clients (met or not). Prints JSON (--out FILE writes it too).
 *   npx tsx bench/serve.ts --backend wasm --clients 1,2,4,8 --max-tokens 64 --out r.json
 *   npx tsx bench/serve.ts --url http://127.0.0.1:8080 --clients 1,32   # a server already running
 *
 * Without --url it starts `griffin serve` (src/cli.ts through tsx) in a child process on --model
 * (default: the shipped assets/griffin-small) with --max-batch the largest N, so that the clients
 * (this process) do not share an event loop with the model. Each client sends --requests
 * streaming /v1/completions one after another: a prompt from a fixed list, temperature 0.8 and
 * top_p 0.95, a seed per request (the runs are repeatable), max_tokens --max-tokens.
 *
 * A random model of a named shape instead (bench/generate.ts's --config, --dtype, --layers, --vocab),
 * e.g. the 2B shape in bfloat16 on the H200:
 *   npx tsx bench/serve.ts --config 2b --dtype bfloat16 --backend webgpu --clients 1,8,32 --out r.json
 * The child then runs this script with --child: it builds the model (weights from a GPU hash, compact
 * matrices packed on the host), serves it with the shipped tokenizer widened to the model's
 * vocabulary (an id past the tokenizer's prints as id mod its size) and no end-of-sequence ids, so
 * every answer runs to max_tokens; the clients send --prompt-len (128) random token ids. Before
 * each level its clients send one 2-token request each (engine and kernels for that batch warm).
 */
import {type ChildProcess, spawn} from 'child_process';
import * as os from 'os';
import * as path from 'path';
import {useBackend} from '../src/backend';
import {
  type Args,
  benchConfig,
  compactArg,
  configArg,
  emit,
  fail,
  intArg,
  intList,
  parseArgs,
  randomIds,
  randomizeWeights,
} from '../src/bench/common';
import {RecurrentGemmaConfig} from '../src/config';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {startServer} from '../src/serve/server';
import {checkMaxBatch} from '../src/serve/slots';
import {GemmaTokenizer} from '../src/tokenizer';

const ROOT = path.join(__dirname, '..');
/** The checkout: ROOT, or its parent when this runs built (tsc --outDir .devdist). */
const REPO = __filename.endsWith('.js') ? path.join(ROOT, '..') : ROOT;

const PROMPTS = [
  'The history of the city begins with',
  'In the morning the farmers went down to the river and',
  'The committee said that the new law would',
  'She opened the letter and read',
  'Scientists have long believed that the',
  'The old man looked at the sea and',
  'After the war, the government decided to',
  'The first thing you notice about the house is',
];

interface RequestResult {
  ttftMs: number;
  tokens: number;
  /** (last chunk - first chunk) / (tokens - 1), or null for a one-token answer. */
  perTokenMs: number | null;
  gapsMs: number[];
  totalMs: number;
}

function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

const round = (x: number | null) => (x == null ? null : Math.round(x * 100) / 100);

/** One streaming completion; times from the request to each content chunk. */
async function oneRequest(
  url: string,
  prompt: string | number[],
  maxTokens: number,
  seed: number,
  key?: string,
): Promise<RequestResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', ...(key ? {Authorization: `Bearer ${key}`} : {})},
    body: JSON.stringify({
      prompt,
      max_tokens: maxTokens,
      temperature: 0.8,
      top_p: 0.95,
      seed,
      stream: true,
      stream_options: {include_usage: true},
    }),
  });
  if (res.status !== 200 || res.body == null) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times: number[] = [];
  let tokens = 0,
    buf = '';
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now();
    buf += decoder.decode(part, {stream: true});
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i).replace(/^data: /, '');
      buf = buf.slice(i + 2);
      if (line === '[DONE]') continue;
      const obj = JSON.parse(line);
      if (obj.error) throw new Error(obj.error.message);
      if (obj.usage) tokens = obj.usage.completion_tokens;
      if (obj.choices?.length) times.push(now);
    }
  }
  const end = performance.now();
  const first = times[0] ?? end;
  const last = times[times.length - 1] ?? end;
  return {
    ttftMs: first - t0,
    tokens,
    perTokenMs: tokens > 1 ? (last - first) / (tokens - 1) : null,
    gapsMs: times.slice(1).map((t, k) => t - times[k]),
    totalMs: end - t0,
  };
}

async function level(
  url: string,
  clients: number,
  requests: number,
  maxTokens: number,
  prompt: (k: number) => string | number[],
  key?: string,
) {
  const before = await health(url);
  const t0 = performance.now();
  const results: RequestResult[] = [];
  await Promise.all(
    Array.from({length: clients}, async (_, c) => {
      for (let r = 0; r < requests; r++) {
        const k = c * requests + r;
        results.push(await oneRequest(url, prompt(k), maxTokens, 1000 + k, key));
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const after = await health(url);
  const tokens = results.reduce((n, r) => n + r.tokens, 0);
  const ttft = results.map((r) => r.ttftMs);
  const perTok = results.flatMap((r) => (r.perTokenMs == null ? [] : [r.perTokenMs]));
  const gaps = results.flatMap((r) => r.gapsMs);
  return {
    clients,
    requests: results.length,
    completionTokens: tokens,
    wallSeconds: round(wall),
    totalTokensPerSec: round(tokens / wall),
    perStreamTokensPerSec: round(perTok.length ? 1000 / quantile(perTok, 0.5)! : null),
    // The batch's pace while its streams decode (prefills of joining requests excluded where they
    // fall between a stream's first and last token): clients x one stream's tokens/s.
    decodeTokensPerSec: round(perTok.length ? (clients * 1000) / quantile(perTok, 0.5)! : null),
    // From the server's /health: tokens per decode step (rows that took part) and its engine's rows.
    rowsPerStep:
      before && after && after.steps > before.steps
        ? round((after.tokens - before.tokens) / (after.steps - before.steps))
        : null,
    engineRows: after?.engineRows ?? null,
    // Engine rows computed with no sequence per step, and engines built (grows, shrinks) in the level.
    deadRowsPerStep:
      before?.deadRows != null && after?.deadRows != null && after.steps > before.steps
        ? round((after.deadRows - before.deadRows) / (after.steps - before.steps))
        : null,
    enginesBuilt: before?.engines != null && after?.engines != null ? after.engines - before.engines : null,
    ttftMs: {p50: round(quantile(ttft, 0.5)), p99: round(quantile(ttft, 0.99))},
    perTokenMs: {p50: round(quantile(perTok, 0.5)), p99: round(quantile(perTok, 0.99))},
    interChunkMs: {p50: round(quantile(gaps, 0.5)), p99: round(quantile(gaps, 0.99))},
  };
}

/**
 * The tokenizer's pieces for a model of a larger vocabulary: it accepts ids up to V and prints an
 * id past its own as id mod its size (benchmarks of random models only).
 */
function widenTokenizer(tok: GemmaTokenizer, V: number): GemmaTokenizer {
  if (V <= tok.vocabSize) return tok;
  const w = Object.create(tok) as GemmaTokenizer;
  Object.defineProperty(w, 'vocabSize', {value: V});
  w.createStreamDecoder = (opts) => {
    const d = tok.createStreamDecoder(opts);
    return {push: (id: number) => d.push(id % tok.vocabSize), flush: () => d.flush()};
  };
  return w;
}

/** --child: builds the random --config model and serves it until SIGTERM; prints its URL like griffin serve. */
async function serveRandom(args: Args): Promise<void> {
  const backend = await useBackend(args.backend);
  const cfg = configArg(args, 'tiny');
  const compact = compactArg(args);
  const t0 = performance.now();
  process.stderr.write(`building ${args.config} (${args.dtype ?? 'float32'}) on ${backend}\n`);
  const model = new RecurrentGemmaForCausalLM(cfg, {compact, init: 'zeros'});
  let tenth = 0;
  randomizeWeights(model, (done, total) => {
    if (done * 10 >= (tenth + 1) * total) {
      tenth = Math.floor((done * 10) / total);
      process.stderr.write(`  weights ${tenth * 10}% (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
    }
  });
  const maxBatch = intArg(args, 'max-batch', 8);
  await checkMaxBatch(model, maxBatch);
  const tok = widenTokenizer(
    await GemmaTokenizer.load(path.join(REPO, 'assets/griffin-small/tokenizer.model')),
    model.config.vocab_size,
  );
  const srv = await startServer({
    model,
    tok,
    modelId: `random-${args.config}`,
    port: 0,
    maxBatch,
    maxQueue: 1000,
    limits: {maxPromptTokens: 1 << 16, maxTokens: 1 << 16, maxN: maxBatch},
    eosIds: [],
  });
  process.stderr.write(`griffin serve: random-${args.config} on ${srv.url} (max batch ${maxBatch})\n`);
  await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  await srv.close();
  model.dispose();
}

/** The server's scheduler counters (GET /health), or null when it does not answer. */
interface Health {
  steps: number;
  tokens: number;
  engineRows?: number;
  deadRows?: number;
  engines?: number;
}

async function health(url: string): Promise<Health | null> {
  try {
    const r = await fetch(`${url}/health`);
    return r.ok ? ((await r.json()) as Health) : null;
  } catch {
    return null;
  }
}

/** Starts the server (`griffin serve`, or this script with --child) and resolves with its URL once it prints it. */
function startChild(args: string[], config: boolean): Promise<{url: string; child: ChildProcess}> {
  // Built (node .devdist/bench/serve.js): the child is this file's built sibling run by node; else tsx on the sources.
  const built = __filename.endsWith('.js');
  const ext = built ? 'js' : 'ts';
  const entry = config
    ? [path.join(ROOT, `bench/serve.${ext}`), '--child']
    : [path.join(ROOT, `src/cli.${ext}`), 'serve'];
  const runner = built ? process.execPath : path.join(ROOT, 'node_modules/.bin/tsx');
  const child = spawn(runner, [...entry, ...args], {
    cwd: REPO,
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      process.stderr.write(d);
      const m = /on (http:\/\/\S+) /.exec(err);
      if (m) resolve({url: m[1], child});
    });
    child.on('exit', (code) => reject(new Error(`griffin serve exited (${code}): ${err.trim().split('\n').pop()}`)));
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child != null) return serveRandom(args);
  const levels = intList(args.clients, [1, 2, 4, 8], 'clients');
  const requests = intArg(args, 'requests', 3);
  const maxTokens = intArg(args, 'max-tokens', 64);
  const maxBatch = intArg(args, 'max-batch', Math.max(...levels));
  const config = args.config ?? null;
  const promptLen = intArg(args, 'prompt-len', 128);
  const model = config != null ? null : (args.model ?? path.join(REPO, 'assets/griffin-small'));
  // A random model's prompts: random ids of its vocabulary, a seed per request.
  const vocab = args.vocab ? intArg(args, 'vocab', 0) : undefined;
  const V = config != null ? new RecurrentGemmaConfig(benchConfig(config, {vocab})).vocab_size : 0;
  const prompt =
    config != null ? (k: number) => randomIds(1, promptLen, V, k + 1)[0] : (k: number) => PROMPTS[k % PROMPTS.length];
  let url = args.url;
  let child: ChildProcess | null = null;
  if (url == null) {
    const serveArgs =
      config != null
        ? ['--config', config, '--max-batch', String(maxBatch)]
        : ['--model', model!, '--port', '0', '--max-batch', String(maxBatch), '--max-queue', '1000'];
    for (const k of ['backend', 'dtype', 'layers', 'vocab', 'group-size'])
      if (args[k]) serveArgs.push(`--${k}`, args[k]);
    ({url, child} = await startChild(serveArgs, config != null));
  }
  try {
    // One warm-up request: first-call costs (kernels, pipelines) stay out of the figures.
    await oneRequest(url, prompt(0), 4, 1, args['api-key']);
    const out = [];
    for (const n of levels) {
      // The level's batch once, short: its engine rows and kernels are made before the clock starts.
      await level(url, n, 1, 2, prompt, args['api-key']);
      console.error(`${n} clients: running ${n * requests} requests of ${maxTokens} tokens ...`);
      const r = await level(url, n, requests, maxTokens, prompt, args['api-key']);
      console.error(
        `${n} clients: ${r.totalTokensPerSec} tok/s total (${r.decodeTokensPerSec} while decoding), ` +
          `TTFT p50 ${r.ttftMs.p50} ms p99 ${r.ttftMs.p99} ms, per token p50 ${r.perTokenMs.p50} ms p99 ${r.perTokenMs.p99} ms, ` +
          `${r.rowsPerStep} rows per step (engine rows ${r.engineRows}, ${r.deadRowsPerStep} dead per step, ${r.enginesBuilt} engines built)`,
      );
      out.push(r);
    }
    const single = out.find((r) => r.clients === 1);
    // Issue 16's goal, for the run it names: the 2B shape in bfloat16, 32 streams, >= 2500 tok/s in total.
    const at32 = out.find((r) => r.clients === 32);
    const goal =
      config === '2b' && args.dtype === 'bfloat16' && at32 != null
        ? {
            clients: 32,
            wantTokensPerSec: 2500,
            totalTokensPerSec: at32.totalTokensPerSec,
            met: at32.totalTokensPerSec! >= 2500,
          }
        : null;
    if (goal != null)
      console.error(
        `goal (2B bf16, 32 streams >= 2500 tok/s): ${goal.totalTokensPerSec} tok/s, ${goal.met ? 'met' : 'not met'}`,
      );
    emit(
      {
        script: 'bench/serve.ts',
        date: new Date().toISOString(),
        machine: {cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg()},
        options: {
          url: args.url ?? null,
          model: args.url ? null : (model ?? `random ${config}`),
          config,
          layers: args.layers ?? null,
          vocab: args.vocab ?? null,
          promptLen: config != null ? promptLen : null,
          backend: args.backend ?? null,
          dtype: args.dtype ?? null,
          maxBatch,
          requests,
          maxTokens,
          sampling: {temperature: 0.8, top_p: 0.95},
        },
        levels: out,
        goal,
        vsSingleStream: single
          ? out.map((r) => ({
              clients: r.clients,
              throughputX: round(r.totalTokensPerSec! / single.totalTokensPerSec!),
              ttftX: round((r.ttftMs.p50 ?? NaN) / (single.ttftMs.p50 ?? NaN)),
              perTokenLatencyX: round((r.perTokenMs.p50 ?? NaN) / (single.perTokenMs.p50 ?? NaN)),
              perTokenP99X: round((r.perTokenMs.p99 ?? NaN) / (single.perTokenMs.p99 ?? NaN)),
            }))
          : null,
      },
      args.out,
    );
  } finally {
    child?.kill('SIGTERM');
  }
}

main().catch((e) => fail('bench/serve.ts', e));
