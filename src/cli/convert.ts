/**
 * `griffin convert`: any checkpoint the package reads (HF or tfjs layout) to the tfjs browser
 * format or to HF, optionally quantized; the tokenizer goes along.
 *   griffin convert --from hf-ckpt/ --out web/ --dtype float16
 *   griffin convert --from owner/name --revision main --out web/   # a Hub id (downloaded into the cache)
 */

import {Command} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import {useBackend} from '../backend';
import {RecurrentGemmaForCausalLM} from '../model';
import {addHubOptions, cliSource, type HubFlags} from './hub';
import {progressBar} from './progress';

export function registerConvert(program: Command): void {
  addHubOptions(program.command('convert'))
    .description('convert a checkpoint (HF or tfjs layout) to tfjs (browser) or HF format')
    .requiredOption('--from <dir>', 'checkpoint directory to read, or a Hub id owner/name')
    .requiredOption('--out <dir>', 'directory to write')
    .option('--format <format>', 'tfjs or hf', 'tfjs')
    .option('--dtype <dtype>', 'tfjs weights: float32, float16 or uint8', 'float32')
    .action(async (o: HubFlags & {from: string; out: string; format: string; dtype: string}) => {
      if (!['tfjs', 'hf'].includes(o.format)) throw new Error(`--format must be tfjs or hf, got ${o.format}`);
      if (!['float32', 'float16', 'uint8'].includes(o.dtype))
        throw new Error(`--dtype must be float32, float16 or uint8, got ${o.dtype}`);
      if (path.resolve(o.from) === path.resolve(o.out)) throw new Error('--out must differ from --from');
      await useBackend('cpu');
      const from = await cliSource(o.from, {weights: true, tokenizer: true}, o);
      const bar = progressBar('loading');
      const model = await RecurrentGemmaForCausalLM.fromPretrained(from, {
        onProgress: (p) => bar.update(p.loaded, p.total),
      });
      bar.done();
      await model.save(o.out, {format: o.format as 'tfjs' | 'hf', dtype: o.dtype as 'float32'});
      for (const f of ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json']) {
        const tok = path.join(from, f);
        if (fs.existsSync(tok)) fs.copyFileSync(tok, path.join(o.out, f));
      }
      const bytes = fs.readdirSync(o.out).reduce((s, f) => s + fs.statSync(path.join(o.out, f)).size, 0);
      process.stderr.write(
        `wrote ${o.out} (${o.format}${o.format === 'tfjs' ? `, ${o.dtype}` : ''}, ${(bytes / 1e6).toFixed(1)} MB)\n`,
      );
    });
}
