/**
 * `griffin serve`: an OpenAI-compatible HTTP server over one model, with continuous batching
 * (src/serve/). It runs until Ctrl-C or SIGTERM.
 *   griffin serve --model ckpt/ --port 8080 --max-batch 8
 *   griffin serve --model ckpt/ --host 0.0.0.0 --api-key secret --backend wasm
 */
import {Command, InvalidArgumentError} from 'commander';
import * as path from 'path';
import {DEFAULT_REQUEST_LIMITS} from '../serve/requests';
import {MAX_BATCH_LIMIT, MAX_QUEUE_LIMIT} from '../serve/scheduler';
import {
  DEFAULT_HOST,
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_QUEUE,
  DEFAULT_PORT,
  type RunningServer,
  startServer,
} from '../serve/server';
import {checkMaxBatch} from '../serve/slots';
import {addDtypeOptions, type DtypeFlags} from './dtype';
import {defaultModelDir, loadModelDir} from './generate';
import {addHubOptions, type HubFlags} from './hub';
import {backendOption, UsageError} from './usage';

const intIn =
  (what: string, min: number, max: number) =>
  (s: string): number => {
    const x = s.trim() === '' ? NaN : Number(s);
    if (!(Number.isInteger(x) && x >= min && x <= max))
      throw new InvalidArgumentError(`${what} must be an integer in [${min}, ${max}].`);
    return x;
  };

interface ServeFlags extends DtypeFlags, HubFlags {
  model?: string;
  adapter?: string;
  backend?: string;
  host: string;
  port: number;
  maxBatch: number;
  maxQueue: number;
  maxPromptTokens: number;
  maxTokens: number;
  maxBodyBytes: number;
  apiKey?: string;
  modelName?: string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function register(program: Command): void {
  addHubOptions(
    addDtypeOptions(
      program
        .command('serve')
        .description(
          'serve the model over HTTP, OpenAI-compatible (/v1/chat/completions, /v1/completions), batching requests',
        ),
    ),
  )
    .option(
      '--model <dir>',
      'checkpoint directory with its tokenizer, a LoRA adapter directory, or a Hub id owner/name (default: the bundled model)',
    )
    .option('--adapter <dir>', "a LoRA adapter directory (PEFT's layout) or Hub id to apply to --model")
    .option('--backend <name>', 'cpu, wasm, webgpu or tensorflow (default: the fastest installed)', backendOption)
    .option('--host <addr>', 'address to listen on (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--port <n>', 'port to listen on (0: any free one)', intIn('--port', 0, 65535), DEFAULT_PORT)
    .option(
      '--max-batch <n>',
      'sequences decoded together at most (slots)',
      intIn('--max-batch', 1, MAX_BATCH_LIMIT),
      DEFAULT_MAX_BATCH,
    )
    .option(
      '--max-queue <n>',
      'requests waiting for a slot at most; past it: 429',
      intIn('--max-queue', 0, MAX_QUEUE_LIMIT),
      DEFAULT_MAX_QUEUE,
    )
    .option(
      '--max-prompt-tokens <n>',
      'longest prompt accepted',
      intIn('--max-prompt-tokens', 1, 1 << 20),
      DEFAULT_REQUEST_LIMITS.maxPromptTokens,
    )
    .option(
      '--max-tokens <n>',
      "largest max_tokens (and chat's default)",
      intIn('--max-tokens', 1, 1 << 20),
      DEFAULT_REQUEST_LIMITS.maxTokens,
    )
    .option(
      '--max-body-bytes <n>',
      'largest request body',
      intIn('--max-body-bytes', 1024, 1 << 30),
      DEFAULT_MAX_BODY_BYTES,
    )
    .option('--api-key <key>', 'require Authorization: Bearer KEY on /v1/* (or set GRIFFIN_API_KEY)')
    .option('--model-name <id>', 'the model id that /v1/models lists (default: the directory name)')
    .action(async (o: ServeFlags) => {
      const apiKey = o.apiKey ?? process.env.GRIFFIN_API_KEY ?? null;
      const {model, tok, dir} = await loadModelDir(o);
      const modelId = o.modelName ?? path.basename(path.resolve(dir ?? defaultModelDir()));
      try {
        await checkMaxBatch(model, o.maxBatch);
      } catch (e) {
        model.dispose();
        throw new UsageError((e as Error).message);
      }
      let srv: RunningServer;
      try {
        srv = await startServer({
          model,
          tok,
          modelId,
          host: o.host,
          port: o.port,
          maxBatch: o.maxBatch,
          maxQueue: o.maxQueue,
          limits: {maxPromptTokens: o.maxPromptTokens, maxTokens: o.maxTokens, maxN: o.maxBatch},
          maxBodyBytes: o.maxBodyBytes,
          apiKey,
        });
      } catch (e) {
        model.dispose();
        throw new Error(`cannot listen on ${o.host}:${o.port}: ${(e as Error).message}`);
      }
      if (!LOOPBACK.has(o.host) && !apiKey)
        process.stderr.write(`warning: listening on ${o.host} without --api-key: anyone who reaches it can use it\n`);
      process.stderr.write(`griffin serve: ${modelId} on ${srv.url} (max batch ${o.maxBatch}); Ctrl-C stops\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await srv.close();
      model.dispose();
    });
}
