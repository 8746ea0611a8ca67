/**
 * Hub ids on the command line: `--model owner/name` (and --adapter, convert's --from) download
 * what the command needs into the huggingface_hub cache, with a byte progress bar on stderr;
 * `--revision` pins the model's branch, tag or commit. A local path always wins.
 *   griffin generate --model owner/name --revision main --prompt "Hi"
 *   const dir = await cliSource('owner/name', {weights: true, tokenizer: true}, {revision: 'main'});
 *
 * The rest comes from the environment as in Python: HF_TOKEN, HF_ENDPOINT, HF_HOME / HF_HUB_CACHE,
 * HF_HUB_OFFLINE=1 (converters/hub.ts).
 */
import type {Command} from 'commander';
import {type HubWant, isHubId, resolveSource} from '../../converters/hub';
import {progressBar} from './progress';
import {UsageError} from './usage';

export interface HubFlags {
  revision?: string;
}

export function addHubOptions(cmd: Command): Command {
  return cmd.option(
    '--revision <rev>',
    'with a Hugging Face Hub id (owner/name): its branch, tag or commit (default main)',
    (s: string) => s,
  );
}

/** A local path as given, or the cache folder of a Hub id with the files of `want` (downloaded with a bar). */
export async function cliSource(source: string, want: HubWant, flags: HubFlags = {}): Promise<string> {
  if (!isHubId(source)) {
    if (flags.revision != null)
      throw new UsageError(`--revision is for a Hub id (owner/name); ${source} is a local path`);
    return source;
  }
  const bar = progressBar(`${source}`, process.stderr, {unit: 'bytes'});
  let shown = false;
  const dir = await resolveSource(source, want, {
    revision: flags.revision,
    onProgress: (p) => {
      shown = true;
      bar.update(p.loaded, p.total, p.name);
    },
  });
  if (shown) bar.done();
  return dir;
}
