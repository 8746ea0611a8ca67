/**
 * The Trainer: its loss path against tiny-a's golden loss and gradients (plain, checkpointed,
 * accumulated), overfitting a small batch, held-out loss falling on real text, resume equal to
 * an uninterrupted run, atomic checkpoints, no leaked tensors.
 */
import * as fs from 'fs';
import * as path from 'path';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {latestCheckpoint, listCheckpoints, writeDirAtomically} from '../../src/training/checkpoint';
import {Batch, countTargets, Example, loadJsonl, tokenizeRecords} from '../../src/training/data';
import {Trainer} from '../../src/training/trainer';
import {loadTinyAGolden, relError} from '../helpers';
import {loadTiny, loadTokenizer, maxDiff, snapshot, TEXT_EVAL, TEXT_TRAIN, tmpDir, useCpu} from './helpers';

const {golden, tensor: goldenTensor} = loadTinyAGolden();
const goldenExamples: Example[] = golden.input_ids.map((ids: number[], i: number) => ({
  ids,
  labels: golden.labels[i],
  where: `golden:${i}`,
}));
const batchOf = (rows: number[]): Batch => {
  const labels = rows.map((r) => golden.labels[r]);
  return {inputIds: rows.map((r) => golden.input_ids[r]), labels, targets: countTargets(labels)};
};

let tok: GemmaTokenizer;
jest.setTimeout(300_000); // the cpu backend on a shared 2-core machine

beforeAll(async () => {
  await useCpu();
  tok = await loadTokenizer();
});

describe("the trainer's loss path equals the golden loss and gradients of tiny-a", () => {
  const cases: [string, boolean, number[][]][] = [
    ['one batch', false, [[0, 1]]],
    ['gradient checkpointing', true, [[0, 1]]],
    ['two accumulated micro-batches (token-weighted)', false, [[0], [1]]],
  ];
  test.each(cases)('%s', async (_, gradientCheckpointing, split) => {
    const model = await loadTiny();
    const trainer = new Trainer(model, {train: goldenExamples, gradientCheckpointing, steps: 1});
    const {loss, targets, grads} = await trainer.lossAndGradients(split.map(batchOf));
    expect(targets).toBe(countTargets(golden.labels));
    expect(Math.abs(loss - golden.loss)).toBeLessThan(1e-5);
    let worst = 0;
    for (const [name, g] of grads) {
      const err = relError(g.dataSync(), goldenTensor(`grad.${name}`));
      worst = Math.max(worst, err);
      expect({name, ok: err < 1e-4}).toEqual({name, ok: true});
    }
    expect(grads.size).toBe(golden.grad_names.length);
    console.log(`${_}: loss ${loss} (golden ${golden.loss}), worst gradient relative error ${worst.toExponential(2)}`);
    tf.dispose([...grads.values()]);
    trainer.dispose();
    model.dispose();
  });
});

test('a small batch is overfitted to near-zero loss', async () => {
  const model = await loadTiny();
  const train = tokenizeRecords(
    [
      {kind: 'completion', prompt: 'Q: who?', completion: ' Alice was beginning to get tired', line: 1},
      {kind: 'completion', prompt: 'Q: where?', completion: ' by her sister on the bank.', line: 2},
    ],
    tok,
    'inline',
    {seqLen: 64},
  );
  const losses: number[] = [];
  const trainer = new Trainer(model, {
    train,
    batchSize: 2,
    steps: 30,
    lr: 1e-2,
    warmupSteps: 0,
    weightDecay: 0,
    minLrRatio: 1,
    onStep: (s) => losses.push(s.loss),
  });
  const before = tf.memory().numTensors;
  await trainer.train();
  expect(tf.memory().numTensors).toBe(before); // nothing leaked over 30 steps
  console.log(
    `overfit: loss ${losses[0].toFixed(3)} -> ${losses[losses.length - 1].toFixed(4)} in ${losses.length} steps`,
  );
  expect(losses[losses.length - 1]).toBeLessThan(0.01);
  trainer.dispose();
  model.dispose();
});

test('held-out loss falls over a short run on real English text', async () => {
  const model = await loadTiny();
  const train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 64}),
    evalData = loadJsonl(TEXT_EVAL, tok, {seqLen: 64});
  const evals: number[] = [];
  const trainer = new Trainer(model, {
    train,
    eval: evalData,
    seqLen: 64,
    batchSize: 2,
    pack: true,
    steps: 12,
    lr: 3e-3,
    warmupSteps: 2,
    evalEvery: 6,
    seed: 1,
    onEval: (e) => evals.push(e.loss),
    outDir: tmpDir('eval'),
    checkpointEvery: 6,
  });
  const n0 = tf.memory().numTensors;
  const r = await trainer.train();
  expect(tf.memory().numTensors).toBe(n0); // evaluations and checkpoints leak nothing
  console.log(
    `eval loss ${evals.map((x) => x.toFixed(3)).join(' -> ')}; perplexity ${r.evalBefore!.perplexity.toFixed(0)} -> ${r.evalAfter!.perplexity.toFixed(1)} (${r.evalAfter!.targets} held-out tokens)`,
  );
  expect(evals).toHaveLength(3);
  expect(evals[1]).toBeLessThan(evals[0]);
  expect(evals[2]).toBeLessThan(evals[1]);
  expect(r.evalAfter!.loss).toBeLessThan(r.evalBefore!.loss - 3);
  expect(r.evalAfter!.perplexity).toBeCloseTo(Math.exp(r.evalAfter!.loss), 6);
  trainer.dispose();
  model.dispose();
});

describe('checkpoints', () => {
  let train: Example[];
  // 13 rows of up to 32 tokens, in packed batches of 2: the 12 micro-batches run past the first epoch.
  beforeAll(() => {
    train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 32}).examples.slice(0, 13);
  });
  // Shuffled, packed, accumulated, over more than one epoch: every piece of state matters.
  const opts = () => ({
    train,
    seqLen: 32,
    batchSize: 2,
    pack: true,
    gradAccum: 2,
    steps: 6,
    lr: 2e-3,
    warmupSteps: 1,
    seed: 3,
  });

  test('3 steps + resume 3 steps equals 6 uninterrupted steps', async () => {
    const a = await loadTiny();
    const ta = new Trainer(a, opts());
    await ta.train();
    expect(ta.dataPosition.epoch).toBeGreaterThanOrEqual(1);

    const out = tmpDir('resume');
    const b = await loadTiny();
    const tb = new Trainer(b, {
      ...opts(),
      outDir: out,
      checkpointEvery: 2,
      onStep: (s) => {
        if (s.step === 3) tb.requestStop();
      },
    });
    const rb = await tb.train();
    expect(rb.stopped).toBe(true);
    expect(rb.steps).toBe(3);
    expect(listCheckpoints(path.join(out, 'checkpoints')).map((c) => c.step)).toEqual([2, 3]);
    b.dispose();

    const c = await loadTiny();
    const tc = new Trainer(c, {...opts(), outDir: out});
    expect(tc.resume()).toBe(path.join(out, 'checkpoints', 'step-000003'));
    expect(tc.step).toBe(3);
    const rc = await tc.train();
    expect(rc.stopped).toBe(false);
    expect(rc.steps).toBe(6);
    expect(rc.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rc.history.map((h) => h.loss)).toEqual(ta.state.history.map((h: {loss: number}) => h.loss));

    const wa = snapshot(a),
      wc = snapshot(c);
    let worst = 0;
    for (const [name, v] of wa) worst = Math.max(worst, maxDiff(v, wc.get(name)!));
    const moved = maxDiff(
      wa.get('model.layers.0.mlp_block.up_proj.weight')!,
      snapshot(await loadTiny()).get('model.layers.0.mlp_block.up_proj.weight')!,
    );
    console.log(
      `resume: max |weight difference| vs uninterrupted ${worst} (weights moved by up to ${moved.toExponential(2)})`,
    );
    expect(moved).toBeGreaterThan(1e-3);
    expect(worst).toBeLessThanOrEqual(1e-7);
    [ta, tb, tc].forEach((t) => t.dispose());
    [a, c].forEach((m) => m.dispose());
  });

  test('a resume with other settings or data is refused', async () => {
    const out = tmpDir('resume-mismatch');
    const m = await loadTiny();
    const t = new Trainer(m, {...opts(), steps: 1, outDir: out});
    await t.train();
    const t2 = new Trainer(m, {...opts(), steps: 1, batchSize: 4, outDir: out});
    expect(() => t2.resume()).toThrow(/written with batchSize 2, this run has 4/);
    const t3 = new Trainer(m, {...opts(), steps: 1, train: train.slice(1), outDir: out});
    expect(() => t3.resume()).toThrow(/other training data/);
    [t, t2, t3].forEach((x) => x.dispose());
    m.dispose();
  });

  test('an interrupted write leaves no checkpoint behind, and stale temp dirs are ignored and cleaned', async () => {
    const root = path.join(tmpDir('atomic'), 'checkpoints');
    await writeDirAtomically(path.join(root, 'step-000001'), (tmp) =>
      fs.writeFileSync(path.join(tmp, 'trainer_state.json'), '{}'),
    );
    await expect(
      writeDirAtomically(path.join(root, 'step-000002'), (tmp) => {
        fs.writeFileSync(path.join(tmp, 'model.safetensors'), 'half');
        throw new Error('killed');
      }),
    ).rejects.toThrow('killed');
    fs.mkdirSync(path.join(root, '.tmp-step-000003-123-456')); // what a kill -9 would leave
    fs.writeFileSync(path.join(root, '.tmp-step-000003-123-456', 'trainer_state.json'), '{}');
    expect(fs.readdirSync(root).sort()).toEqual(['.tmp-step-000003-123-456', 'step-000001']);
    expect(latestCheckpoint(root)).toBe(path.join(root, 'step-000001'));
    // Replacing a checkpoint keeps it whole at every moment; the old copy is gone afterwards.
    await writeDirAtomically(path.join(root, 'step-000001'), (tmp) =>
      fs.writeFileSync(path.join(tmp, 'trainer_state.json'), '{"v": 2}'),
    );
    expect(fs.readFileSync(path.join(root, 'step-000001', 'trainer_state.json'), 'utf8')).toBe('{"v": 2}');
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.old'))).toEqual([]);
  });
});
