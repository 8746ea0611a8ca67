/**
 * Generation speed and memory: prefill and decode tokens/s, or a long run that samples RSS and
 * ms/token every `--every` tokens to show that neither grows with the sequence. Prints JSON.
 *   npx tsx bench/generate.ts --config tiny --backend cpu --prompt-len 256 --new-tokens 128
 *   npx tsx bench/generate.ts --model ckpt/ --long 20000 --every 1000
 *
 * --config names a randomly initialised model: tiny (tiny-a's shape), small, 2b-shaped (the
 * RecurrentGemma-2b shape; --layers / --vocab shrink it to fit a small machine).
 */
import {tf} from '../src/tf';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {useBackend} from '../src/backend';
import {CONFIGS as SHARED_CONFIGS, intArg, parseArgs} from './common';

// Shared with bench/model.ts and griffin bench (common.ts); '2b-shaped' is this script's old name for 2b.
const CONFIGS: typeof SHARED_CONFIGS = {...SHARED_CONFIGS, '2b-shaped': SHARED_CONFIGS['2b']};
const int = intArg;

const rss = () => process.memoryUsage().rss / 2 ** 20;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const backend = await useBackend(args.backend);
  let model: RecurrentGemmaForCausalLM;
  let name: string;
  if (args.model) {
    model = await RecurrentGemmaForCausalLM.fromPretrained(args.model);
    name = args.model;
  } else {
    name = args.config ?? 'tiny';
    const base = CONFIGS[name];
    if (base == null) throw new Error(`--config must be one of ${Object.keys(CONFIGS).join(', ')}`);
    const cfg = {...base};
    if (args.layers) cfg.num_hidden_layers = int(args, 'layers', 0);
    if (args.vocab) cfg.vocab_size = int(args, 'vocab', 0);
    model = new RecurrentGemmaForCausalLM(cfg);
  }
  const c = model.config;
  const batch = Math.max(1, int(args, 'batch', 1));
  const promptLen = Math.max(1, int(args, 'prompt-len', 128));
  const newTokens = int(args, 'new-tokens', 64);
  const longRun = int(args, 'long', 0);
  const every = Math.max(1, int(args, 'every', 1000));
  const rand = (n: number) => Array.from({length: n}, (_, i) => 3 + ((i * 7919 + 17) % (c.vocab_size - 3)));
  const prompt = Array.from({length: batch}, () => rand(promptLen));

  // Warm-up: the first calls compile kernels and allocate.
  const warm = model.prefill(prompt.map((r) => r.slice(0, Math.min(16, promptLen))));
  for (let i = 0; i < 3; i++) model.decodeStep(warm, Array(batch).fill(5)).logits.dispose();
  warm.dispose();

  const report: Record<string, unknown> = {
    model: name, backend, batch, layers: c.num_hidden_layers, hidden: c.hidden_size, vocab: c.vocab_size,
    window: c.attention_window_size, params: model.countParams(),
  };

  let t0 = performance.now();
  const state = model.prefill(prompt);
  await state.logits.data();
  const prefillMs = performance.now() - t0;
  Object.assign(report, {
    promptTokens: promptLen * batch, prefillMs: +prefillMs.toFixed(1),
    prefillTokensPerSec: +((promptLen * batch) / prefillMs * 1000).toFixed(1), stateBytes: state.byteSize,
  });

  if (longRun === 0) {
    // Decode through the public generation path (sampling included), rows never stopping.
    t0 = performance.now();
    let n = 0;
    for await (const _ of model.stream(prompt.map(() => []), {state, maxNewTokens: newTokens, temperature: 0.8, seed: 1, eosTokenId: []})) n++;
    const ms = performance.now() - t0;
    Object.assign(report, {decodeTokens: n, decodeMs: +ms.toFixed(1), decodeTokensPerSec: +(n / ms * 1000).toFixed(1),
      msPerStep: +(ms / (n / batch)).toFixed(3)});
  } else {
    const samples: Record<string, number>[] = [];
    let n = 0, last = performance.now();
    for await (const ev of model.stream(prompt.map(() => []), {state, maxNewTokens: longRun, temperature: 0.8, seed: 1, eosTokenId: []})) {
      if (ev.row !== batch - 1) continue;
      n++;
      if (n % every === 0) {
        const now = performance.now();
        samples.push({tokens: n, msPerToken: +((now - last) / every).toFixed(3), rssMB: +rss().toFixed(1),
          numTensors: tf.memory().numTensors, backendMB: +(tf.memory().numBytes / 2 ** 20).toFixed(2)});
        process.stderr.write(`${JSON.stringify(samples[samples.length - 1])}\n`);
        last = now;
      }
    }
    const first = samples[0], end = samples[samples.length - 1];
    Object.assign(report, {longRunTokens: n, every, samples,
      // The first sample still includes warm-up allocations (JIT, pools): growth is measured from it.
      rssMBFirstLast: first && end ? [first.rssMB, end.rssMB] : null,
      msPerTokenFirstLast: first && end ? [first.msPerToken, end.msPerToken] : null,
      numTensorsFirstLast: first && end ? [first.numTensors, end.numTensors] : null});
  }
  state.dispose();
  model.dispose();
  console.log(JSON.stringify(report, null, 2));
}

main().catch((e) => {
  console.error(`bench/generate: ${(e as Error).message}`);
  process.exitCode = 1;
});
