/**
 * `griffin generate` and `griffin chat`: text from a checkpoint directory holding tokenizer.json or tokenizer.model.
 *   griffin generate --model ckpt/ --prompt "The history of" --max-new-tokens 50 --temperature 0
 *   griffin generate --model ckpt/ --prompt - < prompt.txt   # the prompt from stdin (also when piped)
 *   griffin chat --model ckpt/          # multi-turn; the recurrent state carries the conversation
 *   griffin generate --model ckpt/ --adapter lora/ --prompt "Hi"   # or --model lora/ (its base from adapter_config.json)
 *   griffin generate --model owner/name --revision main --prompt "Hi"   # from the Hugging Face Hub (cached as Python does)
 *
 * Generated text goes to stdout as it is produced; statistics (tokens/s) go to stderr. Without
 * --model the package's bundled model (assets/griffin-small/) is used.
 */

import {Command, InvalidArgumentError} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import {checkpointConfig} from '../../converters';
import {adapterSource} from '../../converters/lora_adapter';
import {mergeLora} from '../../layers/lora';
import {useBackend} from '../backend';
import {parameterCount} from '../config';
import type {GenerateOptions} from '../generation/generate';
import {GenerationState} from '../generation/state';
import {RecurrentGemmaForCausalLM} from '../model';
import {encodeChat, GemmaTokenizer, TOKENIZER_JSON, TOKENIZER_MODEL} from '../tokenizer';
import {OPTION_LIMITS, WASM_MAX_WEIGHT_BYTES} from '../util/limits';
import {addDtypeOptions, type DtypeFlags, loadOptions} from './dtype';
import {addHubOptions, cliSource, type HubFlags} from './hub';
import {backendOption, requirePath, UsageError} from './usage';

/** The package root (the folder with our package.json), from src/cli or dist/src/cli alike. */
function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    try {
      if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'griffin-tfjs') return dir;
    } catch {
      /* not here */
    }
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '../..');
  }
}

/** Where the shipped small model lives (checkpoint + tokenizer.model); it may not be installed. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'assets', 'griffin-small');
}

// Argument parsers: commander turns InvalidArgumentError into its one-line usage error.
const number =
  (what: string, ok: (x: number) => boolean, rule: string) =>
  (s: string): number => {
    const x = s.trim() === '' ? NaN : Number(s);
    if (!ok(x)) throw new InvalidArgumentError(`${what} must be ${rule}.`);
    return x;
  };
const positiveInt = (what: string, max: number) =>
  number(what, (x) => Number.isInteger(x) && x >= 1 && x <= max, `an integer from 1 to ${max}`);

interface SamplingFlags extends DtypeFlags, HubFlags {
  model?: string;
  adapter?: string;
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  repetitionPenalty?: number;
  stop?: string[];
  backend?: string;
}

function addSamplingOptions(cmd: Command, defaultMax: number): Command {
  return addHubOptions(addDtypeOptions(cmd))
    .option(
      '--model <dir>',
      'checkpoint directory (HF or tfjs layout) with its tokenizer, a LoRA adapter directory, or a Hub id owner/name (default: the bundled model)',
    )
    .option('--adapter <dir>', "a LoRA adapter directory (PEFT's layout) or Hub id to apply to --model")
    .option(
      '--max-new-tokens <n>',
      'new tokens at most',
      positiveInt('--max-new-tokens', OPTION_LIMITS.maxNewTokens),
      defaultMax,
    )
    .option(
      '--temperature <t>',
      '0 = greedy',
      number('--temperature', (x) => Number.isFinite(x) && x >= 0, 'a number >= 0'),
      0.8,
    )
    .option('--top-k <k>', 'sample among the k most likely tokens', positiveInt('--top-k', OPTION_LIMITS.topK))
    .option(
      '--top-p <p>',
      'nucleus sampling',
      number('--top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'),
    )
    .option(
      '--repetition-penalty <r>',
      'CTRL-style penalty (1 = off)',
      number('--repetition-penalty', (x) => Number.isFinite(x) && x > 0, 'a number > 0'),
    )
    .option(
      '--seed <s>',
      'seed of the sampler (reproducible runs)',
      number('--seed', (x) => Number.isSafeInteger(x), 'an integer'),
    )
    .option('--stop <text>', 'stop when this text is produced (repeatable)', (s: string, prev: string[] = []) => [
      ...prev,
      s,
    ])
    .option('--backend <name>', 'cpu, wasm, webgpu or tensorflow (default: the fastest installed)', backendOption);
}

/** Checks the directory before any heavy loading, so that mistakes fail fast and in one line. */
export async function loadModelDir(
  flags: DtypeFlags & HubFlags & {model?: string; adapter?: string; backend?: string},
): Promise<{model: RecurrentGemmaForCausalLM; tok: GemmaTokenizer; dir: string}> {
  let dir = flags.model;
  if (dir == null) {
    dir = defaultModelDir();
    // The tokenizer may already be there while the checkpoint is still being trained.
    const ckpt = ['config.json', 'model.json'].some((f) => fs.existsSync(path.join(dir!, f)));
    if (!ckpt) throw new Error(`the bundled model is not installed (no checkpoint in ${dir}); pass --model DIR`);
  }
  // A Hub id (owner/name, no such local path) is downloaded first: weights and tokenizer.
  const want = {weights: true, tokenizer: true};
  dir = await cliSource(dir, want, flags);
  requirePath('--model', dir, 'dir');
  const adapterDir = flags.adapter == null ? undefined : await cliSource(flags.adapter, want);
  if (adapterDir != null) requirePath('--adapter', adapterDir, 'dir');
  // An adapter directory (as --model or --adapter) brings its base; both are checked before loading.
  const picked = adapterSource(dir, adapterDir);
  const base = picked.base === dir ? dir : await cliSource(picked.base, want, {revision: picked.baseRevision});
  const adapter = picked.adapter;
  // finetune copies the tokenizer next to the adapter; a PEFT adapter has it (if at all) there too.
  const tokFile = [adapter, base]
    .filter((d): d is string => d != null)
    .flatMap((d) => [TOKENIZER_JSON, TOKENIZER_MODEL].map((f) => path.join(d, f)))
    .find((f) => fs.existsSync(f));
  if (tokFile == null) throw new Error(`no ${TOKENIZER_JSON} or ${TOKENIZER_MODEL} in ${base}`);
  const load = loadOptions(flags);
  const backend = await useBackend(flags.backend);
  if (flags.backend == null && backend === 'wasm') {
    // The default (wasm) cannot hold a multi-GB model in its 4 GiB heap: such a model runs on cpu.
    const dtype = load.dtype === 'auto' || load.dtype == null ? 'float32' : load.dtype;
    const bits = {float32: 32, bfloat16: 16, float16: 16, int8: 8, int4: 4}[dtype];
    const bytes = (bits / 8) * parameterCount(checkpointConfig(base));
    if (bytes > WASM_MAX_WEIGHT_BYTES) {
      await useBackend('cpu');
      process.stderr.write(
        `backend cpu: the model's ${(bytes / 2 ** 30).toFixed(1)} GiB of ${dtype} weights do not fit the wasm backend's 4 GiB heap\n`,
      );
    }
  }
  const tok = await GemmaTokenizer.load(tokFile);
  const model = await RecurrentGemmaForCausalLM.fromPretrained(base, {...load, adapter: adapter ?? undefined});
  // Folded in once: one product per Linear while decoding, and the fused WebGPU decoder applies.
  // A compact base keeps its adapter beside it (folding would round the sum to the compact grid).
  if (adapter != null && model.weightDtype === 'float32') mergeLora(model);
  if (tok.vocabSize > model.config.vocab_size) {
    model.dispose();
    throw new Error(
      `${path.basename(tokFile)} has ${tok.vocabSize} pieces but the model's vocabulary is ${model.config.vocab_size}: not a matching pair`,
    );
  }
  return {model, tok, dir};
}

function generateOptions(flags: SamplingFlags, tok: GemmaTokenizer, seed: number): GenerateOptions {
  return {
    maxNewTokens: flags.maxNewTokens,
    temperature: flags.temperature,
    topK: flags.topK,
    topP: flags.topP,
    repetitionPenalty: flags.repetitionPenalty,
    seed,
    tokenizer: tok,
    stopStrings: flags.stop,
  };
}

const rate = (n: number, ms: number) => (ms > 0 ? (n / ms) * 1000 : Infinity).toFixed(1);

interface ReplyStats {
  tokens: number[];
  promptMs: number;
  decodeMs: number;
}

/**
 * Streams one reply to `out`. The prompt's time is the time to the first token (the prefill plus
 * one draw); the decode rate counts the tokens after it.
 */
async function streamReply(
  model: RecurrentGemmaForCausalLM,
  ids: number[],
  opts: GenerateOptions,
  out: NodeJS.WritableStream,
): Promise<ReplyStats> {
  const tokens: number[] = [];
  const t0 = performance.now();
  let t1 = t0;
  for await (const ev of model.stream([ids], opts)) {
    if (tokens.length === 0) t1 = performance.now();
    tokens.push(ev.tokenId);
    if (ev.text) out.write(ev.text);
  }
  return {tokens, promptMs: t1 - t0, decodeMs: performance.now() - t1};
}

const stats = (promptLen: number, r: ReplyStats, what: string) =>
  `prompt: ${promptLen} tokens, ${rate(promptLen, r.promptMs)} tokens/s; ` +
  `${what}: ${r.tokens.length} tokens, ${rate(Math.max(r.tokens.length - 1, 0), r.decodeMs)} tokens/s`;

/** Reads all of standard input (a piped prompt). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The prompt: --prompt TEXT, or standard input for `--prompt -` or when no --prompt is given and
 * stdin is not a terminal. One final newline of piped text (echo's) is not part of the prompt.
 */
async function readPrompt(flag: string | undefined): Promise<string> {
  let prompt = flag;
  if (flag === '-' || (flag == null && process.stdin.isTTY !== true)) {
    prompt = (await readStdin()).replace(/\r?\n$/, '');
    if (prompt.trim() === '')
      throw new UsageError('--prompt: standard input is empty (pass --prompt TEXT or pipe a prompt)');
  }
  if (prompt == null) throw new UsageError('--prompt TEXT is required (or pipe the prompt on standard input)');
  if (prompt.trim() === '') throw new UsageError('--prompt is empty');
  return prompt;
}

/** Ctrl-C stops the current generation (and prints the stats); a second one exits as usual. */
function abortOnSigint(): {signal: AbortSignal; release: () => void} {
  const ac = new AbortController();
  const onInt = () => {
    ac.abort();
    process.removeListener('SIGINT', onInt);
  };
  process.on('SIGINT', onInt);
  return {signal: ac.signal, release: () => process.removeListener('SIGINT', onInt)};
}

export function register(program: Command): void {
  addSamplingOptions(
    program
      .command('generate')
      .description('generate text from a prompt, streamed to stdout (tokens/s on stderr)')
      .option('--prompt <text>', "the prompt; '-' (or no --prompt with stdin piped) reads it from standard input")
      .option('--chat', 'wrap the prompt in the Gemma chat template (a user turn, then the model answers)'),
    128,
  ).action(async (o: SamplingFlags & {prompt?: string; chat?: boolean}) => {
    const prompt = await readPrompt(o.prompt);
    const {model, tok} = await loadModelDir(o);
    try {
      const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
      const ids = o.chat
        ? encodeChat(tok, [{role: 'user', content: prompt}], {addGenerationPrompt: true})
        : tok.encode(prompt);
      const {signal, release} = abortOnSigint();
      let r: ReplyStats;
      try {
        r = await streamReply(model, ids, {...generateOptions(o, tok, seed), signal}, process.stdout);
      } finally {
        release();
      }
      // Always: a terminal shows stdout and stderr on one screen, so without it the statistics
      // line would start right after the last word; piped output ends in a newline like any text file.
      process.stdout.write('\n');
      process.stderr.write(`${stats(ids.length, r, 'decode')}${o.temperature > 0 ? ` (seed ${seed})` : ''}\n`);
    } finally {
      model.dispose();
    }
  });

  addSamplingOptions(
    program
      .command('chat')
      .description('talk with the model; the recurrent state keeps the conversation, each turn is read once')
      .option('--system <text>', 'instructions put before the first user message'),
    512,
  ).action(async (o: SamplingFlags & {system?: string}) => {
    const {model, tok} = await loadModelDir(o);
    if (tok.startOfTurnId < 0 || tok.endOfTurnId < 0) {
      model.dispose();
      throw new Error('the tokenizer has no <start_of_turn>/<end_of_turn> pieces: not a chat model');
    }
    const interactive = process.stdin.isTTY === true;
    const rl = readline.createInterface({
      input: process.stdin,
      output: interactive ? process.stdout : undefined,
      terminal: interactive,
    });
    let state: GenerationState | null = null;
    let lastToken = -1;
    let generating: AbortController | null = null;
    rl.on('SIGINT', () => {
      if (generating) generating.abort();
      else rl.close();
    });
    const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
    let turn = 0;
    if (interactive) {
      process.stderr.write('chat: type a message; /reset starts over, /exit (or Ctrl-D) leaves\n');
      rl.setPrompt('> ');
      rl.prompt();
    }
    try {
      for await (const line of rl) {
        const text = line.trim();
        if (text === '/exit' || text === '/quit') break;
        if (text === '/reset') {
          state?.dispose();
          state = null;
          lastToken = -1;
        } else if (text !== '') {
          const first = state == null;
          const userTurn = encodeChat(
            tok,
            [
              ...(first && o.system ? [{role: 'system' as const, content: o.system}] : []),
              {role: 'user', content: text},
            ],
            {addGenerationPrompt: true},
          );
          // Later turns go onto the kept state: close the model's turn (its <end_of_turn> unless it
          // already produced it), then the new user turn without a second BOS.
          const ids = first
            ? userTurn
            : [
                ...(lastToken === tok.endOfTurnId ? [] : [tok.endOfTurnId]),
                ...tok.encode('\n', {addBos: false}),
                ...userTurn.slice(1),
              ];
          state ??= GenerationState.empty(model, 1);
          generating = new AbortController();
          let r: ReplyStats;
          try {
            r = await streamReply(
              model,
              ids,
              {...generateOptions(o, tok, seed + turn), state, signal: generating.signal},
              process.stdout,
            );
          } finally {
            generating = null;
          }
          lastToken = r.tokens[r.tokens.length - 1] ?? lastToken;
          process.stdout.write('\n');
          process.stderr.write(`[${stats(ids.length, r, 'reply')}; context ${state.positions[0]} tokens]\n`);
          turn++;
        }
        if (interactive) rl.prompt();
      }
    } finally {
      rl.close();
      state?.dispose();
      model.dispose();
    }
  });
}
