/**
 * Adapter directories (PEFT's layout) as fromPretrained sources: `fromPretrained(adapterDir)`
 * follows base_model_name_or_path (relative to the adapter's folder), `{adapter: dir}` attaches one
 * to any base, `griffin generate --adapter` / `--model ADAPTER` run it; bad adapters fail in one line.
 * Against PEFT 0.21 / transformers 5.17: test/fixtures/hf-goldens/golden_peft.json (make_goldens.py).
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {loadLoraAdapter} from '../../converters/lora_adapter';
import {writeSafetensors} from '../../converters/safetensors';
import {loraAdapters} from '../../layers/lora';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
const FIX = path.join(__dirname, '../fixtures');
const TINY_A = path.join(FIX, 'tiny-a');
const GOLDENS = path.join(FIX, 'hf-goldens');
const OURS = path.join(GOLDENS, 'ours_adapter');
const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400, 354, 313, 210, 270],
  [2, 151, 472, 279, 89, 208, 152, 327, 8, 504, 459, 266],
];

const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = Array.from(logits.dataSync());
  logits.dispose();
  return v;
};
const maxDiff = (a: number[], b: number[]) => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
};

let tmp: string;
let baseLogits: number[];
let reference: number[];

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-adapter-'));
  const base = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  baseLogits = logitsOf(base);
  // The reference: the adapter attached by hand (loadLoraAdapter, test/training/lora.test.ts).
  loadLoraAdapter(base, OURS);
  reference = logitsOf(base);
  base.dispose();
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

test('fromPretrained(adapterDir) loads the base named in adapter_config.json (relative to the adapter) and attaches it', async () => {
  expect(JSON.parse(fs.readFileSync(path.join(OURS, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(
    '../../tiny-a',
  );
  const m = await RecurrentGemmaForCausalLM.fromPretrained(OURS);
  expect(loraAdapters(m).size).toBe(25); // 3 recurrent blocks x (3 + 3 mlp) + 1 attention block x (4 + 3)
  const got = logitsOf(m);
  m.dispose();
  expect(maxDiff(got, reference)).toBe(0);
  expect(maxDiff(got, baseLogits)).toBeGreaterThan(1e-2); // the adapter does change the model
});

test('fromPretrained(base, {adapter}) attaches an adapter to a base given explicitly', async () => {
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {adapter: OURS});
  const got = logitsOf(m);
  m.dispose();
  expect(maxDiff(got, reference)).toBe(0);
});

/** A copy of ours_adapter with its config edited (and optionally other weights). */
function variant(tag: string, edit: (cfg: Record<string, unknown>) => void, weights?: () => void): string {
  const d = path.join(tmp, tag);
  fs.mkdirSync(d, {recursive: true});
  fs.copyFileSync(path.join(OURS, 'adapter_model.safetensors'), path.join(d, 'adapter_model.safetensors'));
  const cfg = JSON.parse(fs.readFileSync(path.join(OURS, 'adapter_config.json'), 'utf8'));
  cfg.base_model_name_or_path = TINY_A;
  edit(cfg);
  fs.writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify(cfg));
  weights?.();
  return d;
}

describe('bad adapters fail in one line, before the model is built', () => {
  const cases: [string, () => string, RegExp][] = [
    [
      'base missing',
      () => variant('nobase', (c) => (c.base_model_name_or_path = './gone')),
      /base model \.\/gone not found/,
    ],
    [
      'no base named',
      () => variant('unnamed', (c) => (c.base_model_name_or_path = null)),
      /base_model_name_or_path is not set/,
    ],
    ['DoRA', () => variant('dora', (c) => (c.use_dora = true)), /use_dora true is not supported/],
    [
      'a regex as target_modules',
      () => variant('regex', (c) => (c.target_modules = '.*proj')),
      /target_modules ".*proj" is a regular expression/,
    ],
    [
      'no weights',
      () => {
        const d = variant('noweights', () => {});
        fs.rmSync(path.join(d, 'adapter_model.safetensors'));
        return d;
      },
      /no adapter_model\.safetensors/,
    ],
    [
      'shapes of another model',
      () => {
        const d = variant('shapes', (c) => {
          c.target_modules = ['up_proj'];
          c.r = 2;
        });
        // An up_proj adapter for hidden size 32 (tiny-a's is 64).
        const tensors = [0, 1, 2, 3].flatMap((l) => [
          {
            name: `base_model.model.model.layers.${l}.mlp_block.up_proj.lora_A.weight`,
            shape: [2, 32],
            data: new Float32Array(64),
          },
          {
            name: `base_model.model.model.layers.${l}.mlp_block.up_proj.lora_B.weight`,
            shape: [192, 2],
            data: new Float32Array(384),
          },
        ]);
        writeSafetensors(path.join(d, 'adapter_model.safetensors'), tensors, {format: 'pt'});
        return d;
      },
      /up_proj\.lora_A\.weight has shape \[2,32\], the model needs \[2,64\]/,
    ],
  ];
  for (const [name, dir, message] of cases) {
    test(name, async () => {
      const before = tf.memory().numTensors;
      await expect(RecurrentGemmaForCausalLM.fromPretrained(dir())).rejects.toThrow(message);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

function griffin(args: string[]) {
  const r = spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return {code: r.status, stdout: r.stdout, stderr: r.stderr};
}

test('griffin generate --adapter DIR, or --model ADAPTER_DIR: the adapted model greedy text', async () => {
  const base = path.join(tmp, 'base');
  fs.mkdirSync(base);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(base, f));
  fs.copyFileSync(path.join(FIX, 'tokenizer/tiny.model'), path.join(base, 'tokenizer.model'));
  const adapter = variant('cli', (c) => (c.base_model_name_or_path = '../base'));
  const tok = await GemmaTokenizer.load(path.join(base, 'tokenizer.model'));
  const m = await RecurrentGemmaForCausalLM.fromPretrained(base, {adapter});
  const ids = tok.encode('The history of');
  const [out] = await m.generate([ids], {maxNewTokens: 12, temperature: 0});
  m.dispose();
  const text = `${tok.decode(out.slice(ids.length), {skipSpecial: true})}\n`;
  const common = ['--prompt', 'The history of', '--temperature', '0', '--max-new-tokens', '12', '--backend', 'cpu'];
  for (const args of [
    ['generate', '--model', base, '--adapter', adapter, ...common],
    ['generate', '--model', adapter, ...common],
  ]) {
    const r = griffin(args);
    expect(r.stderr).toMatch(/decode: 12 tokens/);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(text);
  }
  const bad = griffin(['generate', '--model', base, '--adapter', path.join(tmp, 'nope'), ...common]);
  expect(bad.code).toBe(2);
  expect(bad.stderr.trim().split('\n')).toEqual([`griffin: --adapter: directory not found: ${path.join(tmp, 'nope')}`]);
});

const peftGolden = path.join(GOLDENS, 'golden_peft.json');
describe('against PEFT (golden_peft.json)', () => {
  const flat = (x: number[][][]) => x.flat(2);
  let g: {base_logits: number[][][]; peft_adapter_logits: number[][][]; ours_adapter_logits: number[][][]};
  beforeAll(() => {
    g = JSON.parse(fs.readFileSync(peftGolden, 'utf8'));
  });
  test('the base model agrees with transformers', () => {
    expect(maxDiff(baseLogits, flat(g.base_logits))).toBeLessThan(1e-4);
  });
  test('an adapter that PEFT wrote loads and gives PEFT logits', async () => {
    const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {adapter: path.join(GOLDENS, 'peft_adapter')});
    const got = logitsOf(m);
    m.dispose();
    expect(maxDiff(flat(g.peft_adapter_logits), flat(g.base_logits))).toBeGreaterThan(1e-2);
    expect(maxDiff(got, flat(g.peft_adapter_logits))).toBeLessThan(1e-4);
  });
  test('PEFT loads the adapter this package wrote: its logits are ours', () => {
    expect(maxDiff(flat(g.ours_adapter_logits), flat(g.base_logits))).toBeGreaterThan(1e-2);
    expect(maxDiff(reference, flat(g.ours_adapter_logits))).toBeLessThan(1e-4);
  });
});
