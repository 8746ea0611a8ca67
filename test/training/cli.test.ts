/**
 * `griffin finetune` end to end as a real process (the built dist/cli.js): full and LoRA runs
 * whose output loads with fromPretrained, Ctrl-C + --resume ending where an uninterrupted run
 * ends, and one-line errors for bad data and bad flags.
 */
import {execFileSync, spawn, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {loadLoraAdapter} from '../../converters/lora_adapter';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {maxDiff, snapshot, TEXT_EVAL, TEXT_TRAIN, tinyModelDir, tmpDir, useCpu, writeJsonl} from './helpers';

jest.setTimeout(600_000);

const ROOT = path.join(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/cli.js');
let modelDir: string;
let work: string;

const cli = (args: string[]) =>
  spawnSync(process.execPath, [CLI, 'finetune', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: {...process.env, GRIFFIN_DEBUG: ''},
  });
const common = [
  '--data',
  TEXT_TRAIN,
  '--seq-len',
  '32',
  '--batch-size',
  '2',
  '--pack',
  '--lr',
  '3e-3',
  '--backend',
  'cpu',
];
const IDS = [[2, 342, 48, 451, 411, 374, 280, 400]];
const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = logits.dataSync() as Float32Array;
  logits.dispose();
  return v;
};

beforeAll(async () => {
  await useCpu();
  execFileSync('npm', ['run', 'build'], {cwd: ROOT, stdio: 'pipe'});
  modelDir = tinyModelDir();
  work = tmpDir('cli');
});

test('full fine-tune: exit 0, eval reported, the output directory loads and differs from the base', async () => {
  const out = path.join(work, 'full');
  const r = cli(['--model', modelDir, '--eval', TEXT_EVAL, '--out', out, '--steps', '3', ...common]);
  expect({status: r.status, stderr: r.stderr}).toMatchObject({status: 0});
  expect(r.stderr).toMatch(/eval at step 0: loss [\d.]+, perplexity/);
  expect(r.stderr).toMatch(/wrote model \(hf\) to .* after 3 steps on cpu; eval loss [\d.]+ -> [\d.]+/);
  for (const f of [
    'config.json',
    'model.safetensors',
    'tokenizer.model',
    'training_summary.json',
    'checkpoints/step-000003/trainer_state.json',
  ]) {
    expect(fs.existsSync(path.join(out, f))).toBe(true);
  }
  const tuned = await RecurrentGemmaForCausalLM.fromPretrained(out);
  const base = await RecurrentGemmaForCausalLM.fromPretrained(modelDir);
  expect(maxDiff(logitsOf(tuned), logitsOf(base))).toBeGreaterThan(1e-3);
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'training_summary.json'), 'utf8'));
  expect(summary.eval_after.loss).toBeLessThan(summary.eval_before.loss);
  tuned.dispose();
  base.dispose();
});

test('LoRA + --merge: adapter files and a merged model equal to base + adapter', async () => {
  const out = path.join(work, 'lora');
  const r = cli([
    '--model',
    modelDir,
    '--out',
    out,
    '--steps',
    '2',
    '--lora-rank',
    '4',
    '--lora-alpha',
    '8',
    '--lora-targets',
    'q_proj,v_proj,linear_x,linear_y,gate_proj',
    '--merge',
    ...common,
    '--lr',
    '3e-2',
  ]);
  expect({status: r.status, stderr: r.stderr}).toMatchObject({status: 0});
  expect(r.stderr).toMatch(/wrote LoRA adapter \+ merged model \(hf\)/);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
  expect(config).toMatchObject({
    r: 4,
    lora_alpha: 8,
    target_modules: ['q_proj', 'v_proj', 'linear_x', 'linear_y', 'gate_proj'],
  });
  const merged = await RecurrentGemmaForCausalLM.fromPretrained(out);
  const withAdapter = await RecurrentGemmaForCausalLM.fromPretrained(modelDir);
  loadLoraAdapter(withAdapter, out);
  const diff = maxDiff(logitsOf(merged), logitsOf(withAdapter));
  expect(diff).toBeLessThan(1e-5);
  merged.dispose();
  withAdapter.dispose();
});

test('Ctrl-C stops with a checkpoint; --resume ends with the weights of an uninterrupted run', async () => {
  const args = (out: string) => [
    '--model',
    modelDir,
    '--out',
    out,
    '--steps',
    '6',
    '--grad-accum',
    '2',
    '--checkpoint-every',
    '1',
    ...common,
  ];
  const straight = path.join(work, 'straight');
  expect(cli(args(straight)).status).toBe(0);

  const out = path.join(work, 'interrupted');
  const child = spawn(process.execPath, [CLI, 'finetune', ...args(out)], {cwd: ROOT});
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => {
    const poll = setInterval(() => {
      if (fs.existsSync(path.join(out, 'checkpoints', 'step-000001'))) {
        clearInterval(poll);
        child.kill('SIGINT');
      }
    }, 50);
    child.on('exit', (c) => {
      clearInterval(poll);
      resolve(c);
    });
  });
  expect(code).toBe(1);
  expect(stderr).toMatch(
    /griffin: stopped at step [1-5]; checkpoint in .*step-00000[1-5]; run again with --resume to continue/,
  );
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);

  const again = cli([...args(out), '--resume']);
  expect({status: again.status, stderr: again.stderr}).toMatchObject({status: 0});
  expect(again.stderr).toMatch(/resuming from .*step-00000[1-5] \(step [1-5] of 6\)/);
  const a = snapshot(await RecurrentGemmaForCausalLM.fromPretrained(straight));
  const b = snapshot(await RecurrentGemmaForCausalLM.fromPretrained(out));
  let worst = 0;
  for (const [name, v] of a) worst = Math.max(worst, maxDiff(v, b.get(name)!));
  console.log(
    `CLI: interrupted at "${stderr.match(/stopped at step \d/)![0]}", resumed; max weight difference vs uninterrupted: ${worst}`,
  );
  expect(worst).toBe(0);
});

test('errors are one line with exit code 1 (bad data: file:line) or 2 (usage)', () => {
  const bad = writeJsonl(path.join(work, 'bad.jsonl'), [
    {text: 'fine'},
    {text: 'also fine'},
    '{"messages": [{"role": "user"}]}',
  ]);
  const r = cli(['--model', modelDir, '--data', bad, '--out', path.join(work, 'bad-out')]);
  expect(r.status).toBe(1);
  expect(r.stderr).toBe(`griffin: ${bad}:3: messages[0].content must be a string\n`);
  expect(fs.existsSync(path.join(work, 'bad-out', 'checkpoints'))).toBe(false);

  const u = cli([
    '--model',
    modelDir,
    '--data',
    TEXT_TRAIN,
    '--out',
    path.join(work, 'u'),
    '--epochs',
    '1',
    '--steps',
    '2',
  ]);
  expect(u.status).toBe(2);
  expect(u.stderr).toBe('griffin: give --epochs or --steps, not both\n');
  const v = cli(['--model', modelDir, '--data', TEXT_TRAIN, '--out', path.join(work, 'v'), '--lora-rank', '0']);
  expect(v.status).toBe(2);
  expect(v.stderr.trim().split('\n')).toHaveLength(1);
  expect(v.stderr).toMatch(/--lora-rank must be an integer from 1 to 32768/);
  const w = cli(['--model', path.join(work, 'missing'), '--data', TEXT_TRAIN, '--out', path.join(work, 'w')]);
  expect(w.status).toBe(2);
  expect(w.stderr).toMatch(/^griffin: --model: directory not found: .*missing\n$/);
});
