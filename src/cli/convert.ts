/**
 * `griffin convert`: any checkpoint the package reads (HF or tfjs layout) to the tfjs browser
 * format, its weight matrices as float32, float16, bfloat16, int8 or int4 (converted tensor by
 * tensor: converters/tfjs_export.ts; the formats: docs/compact-format.md), or to HF; the
 * tokenizer goes along (a checkpoint without one is refused unless --no-tokenizer). `--dtype uint8`
 * (tfjs's own per-tensor affine bytes) and `--format hf` load the whole model first. Either way the
 * output is written all or nothing and replaces the model there (converters/model_dir.ts).
 * `--calibration` fits int4 by GPTQ (converters/calibrated_export.ts): that needs activations, so
 * the float32 model is loaded whole first; its peak memory is refused past the machine's up front, and told.
 *   griffin convert --from hf-ckpt/ --out web/ --dtype int4 --group-size 64
 *   griffin convert --from hf-ckpt/ --out web/ --dtype int4 --calibration default --calibration-tokens 65536
 *   griffin convert --from owner/name --revision main --out web/   # a Hub id (downloaded into the cache)
 */

import {Command, InvalidArgumentError} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import {writeDirAtomic} from '../../converters/atomic_dir';
import {calibrationMemory, exportCalibrated, sizeText} from '../../converters/calibrated_export';
import {pretrainedWriter} from '../../converters/index';
import {checkOutputDir, keepBeside, sameDir} from '../../converters/model_dir';
import {carryFiles, type ExportDtype, exportTfjs, openTensorSource} from '../../converters/tfjs_export';
import {INT4_GROUP_SIZES} from '../../ops/compact/format';
import {useBackend} from '../backend';
import {CALIBRATION_TOKENS} from '../data/calibration';
import {RecurrentGemmaForCausalLM} from '../model';
import {addHubOptions, cliSource, type HubFlags} from './hub';
import {type ProgressBar, progressBar} from './progress';
import {requirePath, UsageError} from './usage';

const DTYPES = ['float32', 'float16', 'bfloat16', 'int8', 'int4', 'uint8'] as const;

interface ConvertFlags extends HubFlags {
  from: string;
  out: string;
  format: string;
  dtype: string;
  groupSize?: number;
  zeroPoints?: boolean;
  /** 'default' or a text file: GPTQ's calibration text. */
  calibration?: string;
  calibrationTokens?: number;
  /** false with --no-tokenizer. */
  tokenizer: boolean;
}

function checkFlags(o: ConvertFlags): void {
  if (!['tfjs', 'hf'].includes(o.format)) throw new UsageError(`--format must be tfjs or hf, got ${o.format}`);
  if (!(DTYPES as readonly string[]).includes(o.dtype))
    throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got ${o.dtype}`);
  if (o.format === 'hf' && o.dtype !== 'float32')
    throw new UsageError(`--format hf is written in float32; --dtype ${o.dtype} is for --format tfjs`);
  if (o.groupSize != null && o.dtype !== 'int4') throw new UsageError('--group-size is for --dtype int4');
  if (o.zeroPoints && o.dtype !== 'int4') throw new UsageError('--zero-points is for --dtype int4');
  if (o.calibration != null && o.dtype !== 'int4')
    throw new UsageError('--calibration fits int4 weights: use it with --dtype int4');
  if (o.calibrationTokens != null && o.calibration == null)
    throw new UsageError('--calibration-tokens is for --calibration');
  if (o.calibration != null && o.calibration !== 'default') requirePath('--calibration', o.calibration, 'file');
  if (sameDir(o.from, o.out)) throw new UsageError(`--out ${o.out} is the --from directory (symlinks resolved)`);
}

/** The input (a local directory by now) exists and has a tokenizer, unless --no-tokenizer. */
function checkInput(o: ConvertFlags): void {
  requirePath('--from', o.from, 'dir');
  // Without its tokenizer the output could not generate: refused unless asked for.
  if (o.tokenizer && !['tokenizer.json', 'tokenizer.model'].some((f) => fs.existsSync(path.join(o.from, f)))) {
    throw new UsageError(
      `--from ${o.from} has no tokenizer.json or tokenizer.model: pass --no-tokenizer to convert the weights alone`,
    );
  }
}

/**
 * int4 fitted by GPTQ: not tensor by tensor, since GPTQ needs the activations of a float32 forward
 * pass of the whole model. The peak memory is told, and refused past the machine's, before any read.
 */
async function convertCalibrated(o: ConvertFlags): Promise<void> {
  const src = openTensorSource(o.from);
  const need = calibrationMemory(src);
  const bars: {load?: ProgressBar; rows?: ProgressBar; fit?: ProgressBar} = {};
  // Told once the input, output and text are checked (a refusal stays one line): loading, the forward passes,
  // then the fit and write (its bar starts with the first tensor written).
  const start = () => {
    process.stderr.write(
      `calibrating: GPTQ needs activations, so the float32 model is loaded whole, not tensor by tensor: ` +
        `about ${sizeText(need.total)} at the peak (model ${sizeText(need.model)}, second moments ${sizeText(need.moments)}, ` +
        `forward pass ${sizeText(need.activations)}, fit ${sizeText(need.fit)})\n`,
    );
    bars.load = progressBar('loading');
  };
  let n = 0;
  await exportCalibrated(src, o.out, {
    dtype: 'int4',
    groupSize: o.groupSize,
    zeroPoints: o.zeroPoints,
    tokenizer: o.tokenizer,
    calibration: o.calibration!,
    calibrationTokens: o.calibrationTokens,
    onStart: start,
    onLoad: (p) => bars.load?.update(p.loaded, p.total),
    onCalibrate: (done, total) => {
      if (bars.rows == null) {
        bars.load?.done();
        bars.rows = progressBar('calibrating');
      }
      bars.rows.update(done, total, 'rows');
    },
    onProgress: (p) => {
      if (bars.fit == null) {
        bars.rows?.done();
        bars.fit = progressBar('fitting', process.stderr, {unit: 'bytes'});
      }
      bars.fit.update(p.loaded, p.total, `${++n}/${src.list.length} tensors`);
    },
  });
  bars.fit?.done();
}

/** uint8 and HF: the whole model loaded, then saved with the input's tokenizer in one atomic save. */
async function convertWhole(o: ConvertFlags): Promise<void> {
  checkOutputDir(o.out);
  const bar = progressBar('loading');
  const model = await RecurrentGemmaForCausalLM.fromPretrained(o.from, {
    onProgress: (p) => bar.update(p.loaded, p.total),
  });
  bar.done();
  try {
    const weights = await pretrainedWriter(model, {format: o.format as 'tfjs' | 'hf', dtype: o.dtype as 'float32'});
    await writeDirAtomic(
      o.out,
      (tmp) => {
        weights(tmp);
        carryFiles(o.from, tmp, {tokenizer: o.tokenizer});
      },
      {keep: keepBeside({tokenizer: true})},
    );
  } finally {
    model.dispose();
  }
}

export function registerConvert(program: Command): void {
  addHubOptions(program.command('convert'))
    .description('convert a checkpoint (HF or tfjs layout) to tfjs (browser) or HF format')
    .requiredOption('--from <dir>', 'checkpoint directory to read, or a Hub id owner/name')
    .requiredOption(
      '--out <dir>',
      'directory to write (a new one, an empty one, or a model directory: its model and tokenizer are replaced)',
    )
    .option('--format <format>', 'tfjs or hf', 'tfjs')
    .option('--dtype <dtype>', `tfjs weight matrices: ${DTYPES.join(', ')}`, 'float32')
    .option('--group-size <n>', `int4: values per scale (${INT4_GROUP_SIZES.join(', ')}; default 64)`, (s: string) => {
      const n = Number(s);
      if (!(INT4_GROUP_SIZES as readonly number[]).includes(n))
        throw new InvalidArgumentError(`--group-size must be one of ${INT4_GROUP_SIZES.join(', ')}.`);
      return n;
    })
    .option('--zero-points', 'int4: a zero point per group (asymmetric ranges)')
    .option(
      '--calibration <text>',
      "int4: fit the weights by GPTQ to activations on calibration text: 'default' (the Brown corpus's training " +
        'split) or a UTF-8 text file; loads the float32 model whole (not tensor by tensor)',
    )
    .option(
      '--calibration-tokens <n>',
      `calibration tokens at most (whole rows of 256; default ${CALIBRATION_TOKENS.default})`,
      (s: string) => {
        const n = Number(s);
        if (!Number.isInteger(n) || n < CALIBRATION_TOKENS.min || n > CALIBRATION_TOKENS.max)
          throw new InvalidArgumentError(
            `--calibration-tokens must be an integer in [${CALIBRATION_TOKENS.min}, ${CALIBRATION_TOKENS.max}].`,
          );
        return n;
      },
    )
    .option('--no-tokenizer', 'convert a checkpoint that has no tokenizer (the output then has none either)')
    .action(async (o: ConvertFlags) => {
      checkFlags(o);
      await useBackend('cpu');
      o.from = await cliSource(o.from, {weights: true, tokenizer: o.tokenizer}, o);
      checkInput(o);
      if (o.format === 'hf' || o.dtype === 'uint8') {
        await convertWhole(o);
      } else if (o.calibration != null) {
        await convertCalibrated(o);
      } else {
        const src = openTensorSource(o.from);
        const bar = progressBar('converting', process.stderr, {unit: 'bytes'});
        let n = 0;
        await exportTfjs(src, o.out, {
          dtype: o.dtype as ExportDtype,
          groupSize: o.groupSize,
          zeroPoints: o.zeroPoints,
          tokenizer: o.tokenizer,
          onProgress: (p) => bar.update(p.loaded, p.total, `${++n}/${src.list.length} tensors`),
        });
        bar.done();
      }
      const bytes = fs
        .readdirSync(o.out)
        .filter((f) => f.endsWith('.bin') || f.endsWith('.safetensors'))
        .reduce((s, f) => s + fs.statSync(path.join(o.out, f)).size, 0);
      const what =
        o.format === 'tfjs'
          ? `, ${o.dtype}${o.dtype === 'int4' ? ` group ${o.groupSize ?? 64}${o.zeroPoints ? ' with zero points' : ''}` : ''}` +
            (o.calibration != null ? `, GPTQ on ${o.calibration}` : '')
          : '';
      process.stderr.write(`wrote ${o.out} (${o.format}${what}, weights ${(bytes / 1e6).toFixed(1)} MB)\n`);
    });
}
