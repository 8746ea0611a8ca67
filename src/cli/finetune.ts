/**
 * `griffin finetune`: full or LoRA fine-tuning on JSONL data, with a progress bar, held-out
 * evaluation and resumable checkpoints.
 *   griffin finetune --model ckpt/ --data train.jsonl --eval eval.jsonl --out tuned/ --steps 200
 *   griffin finetune --model ckpt/ --data chat.jsonl --out lora/ --lora-rank 8 --merge --resume
 *   griffin finetune --model owner/name --revision main --data train.jsonl --out lora/ --lora-rank 8   # a Hub id
 *
 * Ctrl-C stops after the current step and writes a checkpoint (a second Ctrl-C quits at once);
 * rerun the same command with --resume to continue. Progress goes to stderr.
 */
import {Command, InvalidArgumentError} from 'commander';
import * as path from 'path';
import {isHubId} from '../../converters/hub';
import {sameDir} from '../../converters/model_dir';
import {LORA_TARGETS} from '../../layers/lora';
import {useBackend} from '../backend';
import {latestCheckpoint} from '../training/checkpoint';
import {finetune} from '../training/finetune';
import {OPTION_LIMITS} from '../util/limits';
import {addDtypeOptions, type DtypeFlags, loadOptions} from './dtype';
import {addHubOptions, cliSource, type HubFlags} from './hub';
import {progressBar} from './progress';
import {backendOption, requirePath, UsageError} from './usage';

const number =
  (what: string, ok: (x: number) => boolean, rule: string) =>
  (s: string): number => {
    const x = s.trim() === '' ? NaN : Number(s);
    if (!ok(x)) throw new InvalidArgumentError(`${what} must be ${rule}.`);
    return x;
  };
const int = (what: string, min: number, max: number) =>
  number(what, (x) => Number.isInteger(x) && x >= min && x <= max, `an integer from ${min} to ${max}`);
const positive = (what: string) => number(what, (x) => Number.isFinite(x) && x > 0, 'a number > 0');
const nonNegative = (what: string) => number(what, (x) => Number.isFinite(x) && x >= 0, 'a number >= 0');
const targets = (s: string): string[] => {
  const list = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = list.find((t) => !LORA_TARGETS.includes(t));
  if (bad != null || list.length === 0)
    throw new InvalidArgumentError(`--lora-targets takes a comma-separated list of ${LORA_TARGETS.join(', ')}.`);
  return list;
};

interface Flags extends DtypeFlags, HubFlags {
  model: string;
  data: string;
  eval?: string;
  out: string;
  tokenizer?: string;
  loraRank?: number;
  loraAlpha?: number;
  loraDropout?: number;
  loraTargets?: string[];
  merge?: boolean;
  epochs?: number;
  steps?: number;
  lr?: number;
  batchSize: number;
  seqLen: number;
  gradAccum: number;
  pack?: boolean;
  skipBadLines?: boolean;
  warmupSteps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  seed: number;
  evalEvery?: number;
  checkpointEvery?: number;
  resume?: boolean;
  gradientCheckpointing?: boolean;
  format: string;
  backend?: string;
}

export function register(program: Command): void {
  addHubOptions(addDtypeOptions(program.command('finetune')))
    .description(
      'fine-tune a checkpoint on JSONL data ({"text"}, {"prompt","completion"} or {"messages"} per line), fully or with LoRA',
    )
    .requiredOption(
      '--model <dir>',
      'checkpoint directory (HF or tfjs layout) holding tokenizer.model, or a Hub id owner/name',
    )
    .requiredOption('--data <file>', 'training data, JSONL')
    .option('--eval <file>', 'held-out data, JSONL: loss and perplexity before, during (--eval-every) and after')
    .requiredOption('--out <dir>', 'where the result and checkpoints/ go')
    .option('--tokenizer <file>', 'tokenizer.model to use (default: the one in --model)')
    .option(
      '--lora-rank <r>',
      'train LoRA adapters of this rank instead of every weight',
      int('--lora-rank', 1, OPTION_LIMITS.loraRank),
    )
    .option('--lora-alpha <a>', 'LoRA scale numerator (update = alpha/r B A; default 2r)', positive('--lora-alpha'))
    .option(
      '--lora-dropout <p>',
      "dropout on the adapters' input",
      number('--lora-dropout', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    )
    .option('--lora-targets <list>', `layers to adapt (default all): ${LORA_TARGETS.join(',')}`, targets)
    .option('--merge', 'with LoRA: also write the merged model (loadable with fromPretrained)')
    .option('--epochs <n>', 'passes over the data (default 1)', int('--epochs', 1, OPTION_LIMITS.epochs))
    .option('--steps <n>', 'optimizer steps instead of epochs', int('--steps', 1, OPTION_LIMITS.steps))
    .option('--lr <x>', 'peak learning rate (default 2e-4 with LoRA, 2e-5 without)', positive('--lr'))
    .option('--batch-size <n>', 'rows per micro-batch', int('--batch-size', 1, OPTION_LIMITS.batchSize), 4)
    .option(
      '--seq-len <n>',
      'longest row in tokens (longer text is split, longer chats cut)',
      int('--seq-len', 2, OPTION_LIMITS.seqLen),
      512,
    )
    .option('--grad-accum <n>', 'micro-batches per optimizer step', int('--grad-accum', 1, OPTION_LIMITS.gradAccum), 1)
    .option('--pack', 'pack several examples into each row (they do not see each other)')
    .option('--skip-bad-lines', 'leave out data lines of invalid UTF-8 (counted, with a warning) instead of failing')
    .option(
      '--warmup-steps <n>',
      'linear warmup before the cosine decay (default 5% of the steps)',
      int('--warmup-steps', 0, OPTION_LIMITS.interval),
    )
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (default 0.01)', nonNegative('--weight-decay'))
    .option('--max-grad-norm <x>', 'clip the global gradient norm (0 = off; default 1)', nonNegative('--max-grad-norm'))
    .option('--seed <n>', 'seed of the data order, LoRA init and dropout', int('--seed', 0, OPTION_LIMITS.seed), 0)
    .option('--eval-every <n>', 'also evaluate every n steps', int('--eval-every', 1, OPTION_LIMITS.interval))
    .option(
      '--checkpoint-every <n>',
      'write a checkpoint every n steps (always one at the end)',
      int('--checkpoint-every', 1, OPTION_LIMITS.interval),
    )
    .option('--resume', 'continue from the newest checkpoint in --out')
    .option(
      '--gradient-checkpointing',
      'recompute activations in the backward pass (memory of one block, one extra forward)',
    )
    .option('--format <format>', 'layout of the written model: hf or tfjs', 'hf')
    .option('--backend <name>', 'cpu, wasm, webgpu or tensorflow (default: the fastest installed)', backendOption)
    .action(async (f: Flags) => run(f));
}

async function run(f: Flags): Promise<void> {
  // Thrown from an action, commander's own errors would exit silently: UsageError prints and exits 2.
  const usage = (m: string) => new UsageError(m);
  if (f.epochs != null && f.steps != null) throw usage('give --epochs or --steps, not both');
  if (f.loraRank == null && (f.loraAlpha != null || f.loraDropout != null || f.loraTargets != null || f.merge)) {
    throw usage('--lora-alpha, --lora-dropout, --lora-targets and --merge need --lora-rank');
  }
  if (!['hf', 'tfjs'].includes(f.format)) throw usage(`--format must be hf or tfjs, got ${f.format}`);
  // A Hub id (owner/name, no such local path) is downloaded below, once the options are checked.
  if (!isHubId(f.model)) requirePath('--model', f.model, 'dir');
  requirePath('--data', f.data, 'file');
  if (f.eval != null) requirePath('--eval', f.eval, 'file');
  if (f.tokenizer != null) requirePath('--tokenizer', f.tokenizer, 'file');
  if (!f.resume && latestCheckpoint(path.join(f.out, 'checkpoints')) != null)
    throw usage(`${f.out} already holds checkpoints of a run: pass --resume to continue it, or choose another --out`);
  if (sameDir(f.out, f.model)) throw usage(`--out ${f.out} is the --model directory (symlinks resolved)`);
  const load = loadOptions(f);
  if (load.dtype !== 'float32' && load.dtype !== 'auto' && f.loraRank == null) {
    throw usage(`--dtype ${load.dtype} holds the base weights frozen: fine-tune them with --lora-rank`);
  }
  const backend = await useBackend(f.backend);
  // A Hub id: its cache folder; an adapter trained on it names the id as its base, as PEFT does.
  const modelDir = await cliSource(f.model, {weights: true, tokenizer: true}, f);
  const baseModel = modelDir === f.model ? undefined : f.model;

  const stderr = process.stderr;
  const bar = progressBar('finetune');
  // A note must not land in the middle of the bar's line.
  const log = (line: string) => stderr.write(stderr.isTTY ? `\r\x1b[K${line}\n` : `${line}\n`);
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(130);
    log('stopping after this step (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  let lastCheckpoint: string | null = null;
  try {
    const r = await finetune({
      model: modelDir,
      baseModel,
      data: f.data,
      eval: f.eval,
      out: f.out,
      tokenizer: f.tokenizer,
      load,
      lora:
        f.loraRank != null
          ? {rank: f.loraRank, alpha: f.loraAlpha, dropout: f.loraDropout, targets: f.loraTargets}
          : null,
      merge: f.merge,
      format: f.format as 'hf' | 'tfjs',
      epochs: f.epochs,
      steps: f.steps,
      lr: f.lr,
      batchSize: f.batchSize,
      seqLen: f.seqLen,
      gradAccum: f.gradAccum,
      pack: f.pack,
      skipBadLines: f.skipBadLines,
      warmupSteps: f.warmupSteps,
      weightDecay: f.weightDecay,
      maxGradNorm: f.maxGradNorm,
      seed: f.seed,
      evalEvery: f.evalEvery,
      checkpointEvery: f.checkpointEvery,
      resume: f.resume,
      gradientCheckpointing: f.gradientCheckpointing,
      signal: controller.signal,
      log,
      onStep: (s) =>
        bar.update(
          s.step,
          s.totalSteps,
          `loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(1)} ${Math.round(s.tokensPerSecond)} tok/s`,
        ),
      onEval: (e) =>
        log(
          `eval at step ${e.step}: loss ${e.loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)} (${e.targets} tokens)`,
        ),
      onCheckpoint: (dir) => {
        lastCheckpoint = dir;
      },
    });
    bar.done();
    r.model.dispose();
    if (r.train.stopped) {
      throw new Error(
        `stopped at step ${r.train.steps}; checkpoint in ${lastCheckpoint}; run again with --resume to continue`,
      );
    }
    const what =
      f.loraRank == null ? `model (${f.format})` : `LoRA adapter${f.merge ? ` + merged model (${f.format})` : ''}`;
    const ev =
      r.train.evalBefore && r.train.evalAfter
        ? `; eval loss ${r.train.evalBefore.loss.toFixed(4)} -> ${r.train.evalAfter.loss.toFixed(4)}`
        : '';
    stderr.write(`wrote ${what} to ${f.out} after ${r.train.steps} steps on ${backend}${ev}\n`);
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}
