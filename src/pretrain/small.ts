/**
 * Trains the small Griffin shipped in assets/griffin-small/ from scratch on the Brown corpus.
 *   node dist/src/pretrain/small.js prepare --out .device-data          # here: corpus -> token files
 *   node dist/src/pretrain/small.js train --data .device-data --out run --backend webgpu --steps 1500
 *   node dist/src/pretrain/small.js train --data .device-data --init run --out run2 --batch 128 ...
 *
 * `prepare` needs the corpus (a devDependency) and the tokenizer; `train` needs only the token
 * files, so it runs on the GPU machine, which has no network and production modules only.
 * Rows are windows of the token stream; a document start (BOS) inside a window restarts the
 * position ids, so the recurrence, the convolution and attention never cross documents.
 */
import * as fs from 'fs';
import * as path from 'path';
import {useBackend} from '../backend';
import {RecurrentGemmaConfig, RecurrentGemmaConfigArgs} from '../config';
import {RecurrentGemmaForCausalLM} from '../model';
import {tf} from '../tf';
import {AdamW, learningRate} from '../training/optimizer';
import {Rng} from '../util/rng';

/** The shipped model's shape: ~4M parameters, a quarter of them the 4096-piece embedding. */
export const SMALL_CONFIG: RecurrentGemmaConfigArgs = {
  vocab_size: 4096,
  hidden_size: 256,
  intermediate_size: 768,
  num_hidden_layers: 6,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  lru_width: 256,
  attention_window_size: 128,
  conv1d_width: 4,
  block_types: ['recurrent', 'recurrent', 'attention'],
  tie_word_embeddings: true,
};

const BOS = 2,
  EOS = 1;

function arg(argv: string[], name: string, def?: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  if (def == null) throw new Error(`missing --${name}`);
  return def;
}

async function prepare(argv: string[]): Promise<void> {
  const out = arg(argv, 'out');
  const tokPath = arg(argv, 'tokenizer', 'assets/griffin-small/tokenizer.model');
  const {brownSplit} = await import('../data/corpus');
  const {GemmaTokenizer} = await import('../tokenizer');
  const tok = await GemmaTokenizer.load(tokPath);
  const split = brownSplit();
  fs.mkdirSync(out, {recursive: true});
  for (const [name, docs] of [
    ['train', split.train],
    ['eval', split.eval],
  ] as const) {
    const ids: number[] = [];
    for (const d of docs) ids.push(...tok.encode(d, {addBos: true}), EOS);
    fs.writeFileSync(path.join(out, `${name}.u16`), Buffer.from(Uint16Array.from(ids).buffer));
    console.log(`${name}: ${docs.length} documents, ${ids.length} tokens`);
  }
}

/** A row of `seqLen` tokens from `start`: ids, labels (no BOS targets), positions restarting at BOS. */
export function window(tokens: ArrayLike<number>, start: number, seqLen: number) {
  const ids: number[] = [],
    labels: number[] = [],
    pos: number[] = [];
  let p = 0;
  for (let i = 0; i < seqLen; i++) {
    const t = tokens[start + i];
    if (t === BOS) p = 0;
    ids.push(t);
    labels.push(t === BOS ? -100 : t);
    pos.push(p++);
  }
  return {ids, labels, pos};
}

export type Row = ReturnType<typeof window>;

/** The first `n` consecutive seqLen windows of the held-out tokens: the fixed evaluation set. */
export function heldOutRows(tokens: ArrayLike<number>, n: number, seqLen: number): Row[] {
  return Array.from({length: Math.min(n, Math.floor(tokens.length / seqLen))}, (_, i) =>
    window(tokens, i * seqLen, seqLen),
  );
}

/** Mean loss over rows (each row weighted equally), `batch` rows per forward pass. */
export async function meanLoss(model: RecurrentGemmaForCausalLM, rows: Row[], batch: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < rows.length; i += batch) {
    const part = rows.slice(i, i + batch);
    const l = tf.tidy(
      () =>
        model.forward({
          inputIds: part.map((r) => r.ids),
          labels: part.map((r) => r.labels),
          positionIds: part.map((r) => r.pos),
        }).loss!,
    );
    sum += (await l.data())[0] * part.length;
    l.dispose();
  }
  return sum / rows.length;
}

/** `eval --model DIR --data DIR [--batch 4,64] [--backend B]`: held-out loss of saved weights. */
async function evaluate(argv: string[]): Promise<void> {
  const backend = await useBackend(arg(argv, 'backend', 'webgpu'));
  const model = await RecurrentGemmaForCausalLM.fromPretrained(arg(argv, 'model'));
  const b = fs.readFileSync(path.join(arg(argv, 'data'), 'eval.u16'));
  const rows = heldOutRows(
    new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2),
    Number(arg(argv, 'eval-rows', '64')),
    Number(arg(argv, 'seq-len', '256')),
  );
  for (const batch of arg(argv, 'batch', '64').split(',').map(Number)) {
    console.log(JSON.stringify({backend, batch, rows: rows.length, evalLoss: await meanLoss(model, rows, batch)}));
  }
}

async function train(argv: string[]): Promise<void> {
  const data = arg(argv, 'data'),
    out = arg(argv, 'out');
  const steps = Number(arg(argv, 'steps', '1500'));
  const batch = Number(arg(argv, 'batch', '32')),
    seqLen = Number(arg(argv, 'seq-len', '256'));
  const lr = Number(arg(argv, 'lr', '2e-3')),
    seed = Number(arg(argv, 'seed', '1234'));
  const maxSeconds = Number(arg(argv, 'max-seconds', 'Infinity'));
  const logEvery = Number(arg(argv, 'log-every', '50')),
    evalEvery = Number(arg(argv, 'eval-every', '250'));
  const backend = await useBackend(arg(argv, 'backend', 'webgpu'));
  const load = (n: string) => {
    const b = fs.readFileSync(path.join(data, `${n}.u16`));
    return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  };
  const trainTok = load('train'),
    evalTok = load('eval');
  tf.randomUniform([1], 0, 1, 'float32', seed).dispose();
  // --init continues from saved weights (a fresh optimizer; the schedule warms up again).
  const init = arg(argv, 'init', '');
  const model = init
    ? await RecurrentGemmaForCausalLM.fromPretrained(init)
    : new RecurrentGemmaForCausalLM(new RecurrentGemmaConfig(SMALL_CONFIG));
  const named = model.namedParameters();
  const params = new Map([...named].map(([n, v]) => [n, v.read() as tf.Variable]));
  const nParams = [...params.values()].reduce((s, v) => s + v.size, 0);
  const opt = new AdamW(params, {weightDecay: 0.1, beta2: 0.95});
  const rng = new Rng(seed);
  const byVarName = new Map([...params].map(([n, v]) => [v.name, n]));
  const evalRows = heldOutRows(evalTok, Number(arg(argv, 'eval-rows', '64')), seqLen);
  const evalLoss = () => meanLoss(model, evalRows, batch);
  const log: Record<string, unknown>[] = [];
  console.log(
    `backend ${backend}, ${nParams} parameters, ${trainTok.length} train tokens, ${steps} steps of ${batch}x${seqLen}`,
  );
  const t0 = Date.now();
  let lastLoss: tf.Scalar | null = null;
  let stepsDone = steps;
  for (let step = 1; step <= steps; step++) {
    const rows = Array.from({length: batch}, () =>
      window(trainTok, Math.floor(rng.next() * (trainTok.length - seqLen)), seqLen),
    );
    const {value, grads} = tf.variableGrads(
      () =>
        model.forward({
          inputIds: rows.map((r) => r.ids),
          labels: rows.map((r) => r.labels),
          positionIds: rows.map((r) => r.pos),
        }).loss!,
      [...params.values()],
    );
    // Global-norm clipping at 1 without reading the norm back (a host read would stall the GPU).
    const clippedByVar = tf.tidy(() => {
      // Pairwise adds, not addN: webgpu's addN cannot bind ~80 inputs in one shader.
      const norm = tf.sqrt(
        Object.values(grads)
          .map((g) => tf.sum(tf.square(g)))
          .reduce((a, b) => tf.add(a, b)),
      );
      const scale = tf.minimum(1, tf.div(1, tf.add(norm, 1e-6)));
      return Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.mul(g, scale)]));
    });
    const clipped = new Map(Object.entries(clippedByVar).map(([k, g]) => [byVarName.get(k)!, g]));
    tf.dispose(Object.values(grads));
    opt.apply(clipped, learningRate(step, {lr, totalSteps: steps, warmupSteps: Math.round(steps * 0.05)}));
    tf.dispose([...clipped.values()]);
    lastLoss?.dispose();
    lastLoss = value;
    if (step % logEvery === 0 || step === steps) {
      const loss = (await value.data())[0];
      const entry: Record<string, unknown> = {
        step,
        loss,
        seconds: (Date.now() - t0) / 1000,
        tokensPerSecond: Math.round((step * batch * seqLen) / ((Date.now() - t0) / 1000)),
      };
      if (step % evalEvery === 0 || step === steps) entry.evalLoss = await evalLoss();
      log.push(entry);
      console.log(JSON.stringify(entry));
      if ((Date.now() - t0) / 1000 > maxSeconds) {
        console.log(`stopping at step ${step}: --max-seconds ${maxSeconds} reached`);
        stepsDone = step;
        break;
      }
    }
  }
  lastLoss?.dispose();
  const finalEval = await evalLoss();
  fs.mkdirSync(out, {recursive: true});
  await model.save(out, {format: 'tfjs', shardBytes: 15 * 1024 * 1024});
  // What was written must be what was trained: evaluate the saved weights too.
  const reloaded = await RecurrentGemmaForCausalLM.fromPretrained(out);
  const savedEval = await meanLoss(reloaded, evalRows, batch);
  reloaded.dispose();
  console.log(JSON.stringify({inProcessEvalLoss: finalEval, savedEvalLoss: savedEval}));
  fs.writeFileSync(
    path.join(out, 'train_log.json'),
    JSON.stringify(
      {
        config: SMALL_CONFIG,
        init: init || null,
        parameters: nParams,
        steps: stepsDone,
        plannedSteps: steps,
        batch,
        seqLen,
        lr,
        seed,
        backend,
        trainTokens: trainTok.length,
        evalTokens: evalRows.length * seqLen,
        finalEvalLoss: finalEval,
        finalEvalPerplexity: Math.exp(finalEval),
        savedEvalLoss: savedEval,
        seconds: (Date.now() - t0) / 1000,
        log,
      },
      null,
      1,
    ),
  );
  console.log(
    `done: eval loss ${finalEval.toFixed(3)} (perplexity ${Math.exp(finalEval).toFixed(1)}), ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
}

if (require.main === module) {
  const [cmd, ...rest] = process.argv.slice(2);
  (cmd === 'prepare'
    ? prepare(rest)
    : cmd === 'train'
      ? train(rest)
      : cmd === 'eval'
        ? evaluate(rest)
        : Promise.reject(new Error('usage: small.js prepare|train|eval ...'))
  ).catch((e) => {
    console.error(`pretrain: ${(e as Error).message}`);
    process.exitCode = 1;
  });
}
