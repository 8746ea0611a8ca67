/**
 * `griffin bench` (also `npm run bench -- ...`): the benchmark suite of src/bench/suite.ts.
 *   griffin bench --config tiny --backend wasm
 *   griffin bench --config 2b --prompt-lengths 128,2048 --batch 1,8 --skip-train --json out.json
 *   griffin bench --model ckpt/ --skip-scan
 *
 * Progress goes to stderr, the table to stdout, the JSON (machine, options, every number) to
 * --json FILE (default bench/results/<date>-<host>-bench-<config>-<backend>.json; --no-json: none).
 * Speeds are measured, never asserted: compare runs of the same machine (the JSON says which).
 */

import {Command, InvalidArgumentError, Option} from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {BACKENDS} from '../backend';
import {CONFIGS, printTable} from '../bench/common';
import {
  DEFAULT_SUITE,
  PHASES,
  Phase,
  runSuite,
  SuiteOptions,
  SuiteResult,
  TABLE_COLUMNS,
  tableRows,
} from '../bench/suite';
import {addDtypeOptions, type DtypeFlags, loadOptions} from './dtype';
import {UsageError} from './usage';

const int =
  (what: string, min: number) =>
  (s: string): number => {
    const x = s.trim() === '' ? NaN : Number(s);
    if (!Number.isInteger(x) || x < min) throw new InvalidArgumentError(`${what} must be an integer >= ${min}.`);
    return x;
  };
const intList =
  (what: string) =>
  (s: string): number[] => {
    const xs = s.split(',').map((v) => (v.trim() === '' ? NaN : Number(v)));
    if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
      throw new InvalidArgumentError(`${what} must be positive integers separated by commas (e.g. 128,2048).`);
    }
    return xs;
  };

/** The parsed flags: the suite's options under their flag names (--batch for batches, --skip-* for skip), and --json. */
export interface BenchFlags extends DtypeFlags, Omit<SuiteOptions, 'load' | 'batches' | 'skip'> {
  batch: number[];
  skipPrefill?: boolean;
  skipDecode?: boolean;
  skipScan?: boolean;
  skipTrain?: boolean;
  json: string | boolean;
}

/** The flags as suite options (after commander's per-option checks): the cross-option rules. */
export function suiteOptions(f: BenchFlags, configGiven: boolean): SuiteOptions {
  if (f.model != null && configGiven) throw new UsageError('give --config or --model, not both');
  if (f.model != null && (f.layers != null || f.vocab != null))
    throw new UsageError('--layers and --vocab shrink a --config, not a --model');
  if (f.model != null && !fs.existsSync(f.model)) throw new UsageError(`model directory not found: ${f.model}`);
  const skip = PHASES.filter(
    (p) => f[`skip${p[0].toUpperCase()}${p.slice(1)}` as keyof BenchFlags] === true,
  ) as Phase[];
  return {
    config: f.config,
    model: f.model,
    layers: f.layers,
    vocab: f.vocab,
    backend: f.backend,
    load: loadOptions(f),
    promptLengths: f.promptLengths,
    batches: f.batch,
    newTokens: f.newTokens,
    decodePrompt: f.decodePrompt,
    chunk: f.chunk,
    reps: f.reps,
    scanBatch: f.scanBatch,
    scanLengths: f.scanLengths,
    trainBatch: f.trainBatch,
    trainSeq: f.trainSeq,
    trainSteps: f.trainSteps,
    skip,
  };
}

/** bench/results/<date>-<host>-bench-<config>-<backend>.json under the working directory. */
export function defaultJsonPath(r: SuiteResult): string {
  const host = os
    .hostname()
    .split('.')[0]
    .replace(/[^A-Za-z0-9_-]/g, '_');
  const what = r.options.model != null ? path.basename(path.resolve(r.options.model)) : r.options.config;
  return path.join(
    'bench',
    'results',
    `${r.environment.date.slice(0, 10)}-${host}-bench-${what}-${r.environment.backend}.json`,
  );
}

export function register(program: Command): void {
  const d = DEFAULT_SUITE;
  addDtypeOptions(program.command('bench'))
    .description(
      'benchmark a model shape (random weights) or a checkpoint: load, memory, prefill, decode, scan bandwidth, training step',
    )
    .addOption(
      new Option('--config <name>', 'model shape with random weights').choices(Object.keys(CONFIGS)).default('small'),
    )
    .option('--model <dir>', 'a checkpoint directory instead of --config')
    .option('--layers <n>', 'shrink the config to n layers', int('--layers', 1))
    .option('--vocab <n>', "shrink the config's vocabulary", int('--vocab', 4))
    .addOption(
      new Option('--backend <name>', 'default: the fastest installed (tensorflow, else wasm)').choices([...BACKENDS]),
    )
    .option('--prompt-lengths <list>', 'prefill prompt lengths', intList('--prompt-lengths'), d.promptLengths)
    .option('--batch <list>', 'decode batch sizes', intList('--batch'), d.batches)
    .option('--new-tokens <n>', 'decode steps timed per batch size', int('--new-tokens', 1), d.newTokens)
    .option('--decode-prompt <n>', 'prompt length before decoding', int('--decode-prompt', 1), d.decodePrompt)
    .option(
      '--chunk <n>',
      'prefill chunk size (default: 512; on webgpu the longest that fits, up to 4096)',
      int('--chunk', 1),
    )
    .option('--reps <n>', 'timed repetitions (median)', int('--reps', 1), d.reps)
    .option('--scan-batch <n>', 'RgLruScan batch', int('--scan-batch', 1), d.scanBatch)
    .option('--scan-lengths <list>', 'RgLruScan lengths (default: the prompt lengths)', intList('--scan-lengths'))
    .option('--train-batch <n>', 'rows of the fine-tuning step', int('--train-batch', 1), d.trainBatch)
    .option('--train-seq <n>', 'tokens per row of the fine-tuning step', int('--train-seq', 2), d.trainSeq)
    .option('--train-steps <n>', 'timed fine-tuning steps (after one warm-up)', int('--train-steps', 1), d.trainSteps)
    .option('--skip-prefill', 'no prefill measurement')
    .option('--skip-decode', 'no decode measurement')
    .option('--skip-scan', 'no scan bandwidth measurement')
    .option('--skip-train', 'no fine-tuning step (a 2b/9b step needs ~4x the weights in memory)')
    .option(
      '--json <file>',
      'where the JSON result goes (default bench/results/<date>-<host>-bench-<config>-<backend>.json)',
    )
    .option('--no-json', 'write no JSON file')
    .action(async (f: BenchFlags, cmd: Command) => {
      const opts = suiteOptions(f, cmd.getOptionValueSource('config') === 'cli');
      const result = await runSuite(opts, (m) => process.stderr.write(`${m}\n`));
      const r = result.environment;
      console.log(
        `griffin bench: ${result.model.source} (${result.model.params} params) on ${r.backend}, ` +
          `${r.cpus} x ${r.cpu}, node ${r.node}, tfjs ${r.tfjs}`,
      );
      printTable(tableRows(result), TABLE_COLUMNS);
      if (f.json !== false) {
        const file = typeof f.json === 'string' ? f.json : defaultJsonPath(result);
        fs.mkdirSync(path.dirname(path.resolve(file)), {recursive: true});
        fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
        process.stderr.write(`written to ${file}\n`);
      }
    });
}
