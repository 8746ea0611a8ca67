/**
 * `griffin convert`: any checkpoint the package reads (HF or tfjs layout) to the tfjs browser
 * format or to HF, optionally quantized; the tokenizer goes along.
 *   griffin convert --from hf-ckpt/ --out web/ --dtype float16
 */

import {Command} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import {writeDirAtomic} from '../../converters/atomic_dir';
import {pretrainedWriter} from '../../converters/index';
import {copyTokenizerFiles, keepBeside, sameDir} from '../../converters/model_dir';
import {useBackend} from '../backend';
import {RecurrentGemmaForCausalLM} from '../model';
import {progressBar} from './progress';
import {requirePath, UsageError} from './usage';

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('convert a checkpoint (HF or tfjs layout) to tfjs (browser) or HF format')
    .requiredOption('--from <dir>', 'checkpoint directory to read')
    .requiredOption('--out <dir>', 'directory to write')
    .option('--format <format>', 'tfjs or hf', 'tfjs')
    .option('--dtype <dtype>', 'tfjs weights: float32, float16 or uint8', 'float32')
    .option('--no-tokenizer', 'convert a checkpoint that has no tokenizer (the output then has none either)')
    .action(async (o: {from: string; out: string; format: string; dtype: string; tokenizer: boolean}) => {
      if (!['tfjs', 'hf'].includes(o.format)) throw new UsageError(`--format must be tfjs or hf, got ${o.format}`);
      if (!['float32', 'float16', 'uint8'].includes(o.dtype))
        throw new UsageError(`--dtype must be float32, float16 or uint8, got ${o.dtype}`);
      requirePath('--from', o.from, 'dir');
      // Without its tokenizer the output could not generate: refused unless asked for.
      if (o.tokenizer && !['tokenizer.json', 'tokenizer.model'].some((f) => fs.existsSync(path.join(o.from, f)))) {
        throw new UsageError(
          `--from ${o.from} has no tokenizer.json or tokenizer.model: pass --no-tokenizer to convert the weights alone`,
        );
      }
      if (sameDir(o.from, o.out)) throw new UsageError(`--out ${o.out} is the --from directory (symlinks resolved)`);
      await useBackend('cpu');
      const bar = progressBar('loading');
      const model = await RecurrentGemmaForCausalLM.fromPretrained(o.from, {
        onProgress: (p) => bar.update(p.loaded, p.total),
      });
      bar.done();
      // The model and the tokenizer it came with, in one atomic save that replaces whatever model was there.
      const weights = await pretrainedWriter(model, {format: o.format as 'tfjs' | 'hf', dtype: o.dtype as 'float32'});
      await writeDirAtomic(
        o.out,
        (tmp) => {
          weights(tmp);
          if (o.tokenizer) copyTokenizerFiles(o.from, tmp);
        },
        {keep: keepBeside({tokenizer: true})},
      );
      const bytes = fs.readdirSync(o.out).reduce((s, f) => s + fs.statSync(path.join(o.out, f)).size, 0);
      process.stderr.write(
        `wrote ${o.out} (${o.format}${o.format === 'tfjs' ? `, ${o.dtype}` : ''}, ${(bytes / 1e6).toFixed(1)} MB)\n`,
      );
    });
}
