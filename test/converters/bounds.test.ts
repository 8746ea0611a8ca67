/**
 * Bounds checked before anything is allocated: a config's sizes against src/util/limits.ts, the
 * tensors a config implies against the checkpoint's header (HF and tfjs), the LoRA rank against
 * the layers, a fine-tuning job's memory floor against the backend, and the options' bounds.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {checkpointTensors} from '../../converters/checkpoint_tensors';
import {configTensors} from '../../converters/config_tensors';
import {addLora, loraAdapters} from '../../layers/lora';
import {RecurrentGemmaConfig} from '../../src/config';
import {CausalLMCore} from '../../src/core/model';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {finetune} from '../../src/training/finetune';
import {checkTrainingFits, trainingBytes} from '../../src/training/memory';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
const TOK = path.join(__dirname, '../fixtures/tokenizer/tiny.model');
const DATA = path.join(__dirname, '../training/fixtures/alice_train.jsonl');
const CONFIG = JSON.parse(fs.readFileSync(path.join(TINY_A, 'config.json'), 'utf8'));
let tmp: string;
let n = 0;

/** tiny-a's weights under a changed config.json (and its tokenizer). */
function withConfig(change: Record<string, unknown>): string {
  const dir = path.join(tmp, `c${n++}`);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(TINY_A, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  fs.copyFileSync(TOK, path.join(dir, 'tokenizer.model'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({...CONFIG, ...change}));
  return dir;
}
/** The one-line message fromPretrained(dir) fails with, checking that it left no tensor and took under 3 s. */
async function loadError(dir: string): Promise<string> {
  const before = tf.memory().numTensors;
  const t0 = Date.now();
  let msg = 'loaded';
  try {
    (await RecurrentGemmaForCausalLM.fromPretrained(dir)).dispose();
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(tf.memory().numTensors).toBe(before);
  expect(msg).not.toMatch(/\n/);
  return msg;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-bounds-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

test("configTensors names exactly the built model's tensors and shapes (tied, untied, with attention biases)", () => {
  for (const change of [{}, {tie_word_embeddings: false, attention_bias: true, num_hidden_layers: 5}]) {
    const config = RecurrentGemmaConfig.fromJSON({...CONFIG, ...change});
    const model = new CausalLMCore(config, {init: 'zeros'});
    const built = new Map([...checkpointTensors(model)].map(([k, t]) => [k, t.shape]));
    model.dispose();
    expect(new Map([...configTensors(config)].sort())).toEqual(new Map([...built].sort()));
  }
});

describe('a config that disagrees with its checkpoint is refused before the model is built', () => {
  test('num_hidden_layers 10000: above the limit, naming config.json and the field', async () => {
    const dir = withConfig({num_hidden_layers: 10000});
    expect(await loadError(dir)).toBe(
      `${dir}/config.json: config: num_hidden_layers 10000 is above the limit 1024 (src/util/limits.ts)`,
    );
  });

  test('num_hidden_layers 40 (within the limit): the checkpoint holds 4 layers', async () => {
    const dir = withConfig({num_hidden_layers: 40});
    expect(await loadError(dir)).toBe(
      `${dir}/config.json: num_hidden_layers is 40 but ${dir}/model.safetensors holds tensors of 4 layer(s)`,
    );
  });

  test('hidden_size 65536: above the limit; hidden_size 128: the embedding is [512,64]', async () => {
    expect(await loadError(withConfig({hidden_size: 65536, lru_width: 65536}))).toMatch(
      /config\.json: config: hidden_size 65536 is above the limit 32768/,
    );
    const dir = withConfig({hidden_size: 128, lru_width: 128, head_dim: 32});
    expect(await loadError(dir)).toBe(
      `${dir}/model.safetensors: tensor "model.embed_tokens.weight" has shape [512,64], but ${dir}/config.json (vocab_size, hidden_size) implies [512,128]`,
    );
  });

  test('vocab x hidden past one tensor (within each limit) is refused by the config alone', async () => {
    expect(await loadError(withConfig({vocab_size: 2 ** 21, hidden_size: 2 ** 11, lru_width: 2 ** 11}))).toMatch(
      /config\.json: config: vocab_size x hidden_size = 4294967296 values, more than one tensor holds/,
    );
  });

  test("tfjs: model.json's config against its manifest", async () => {
    const dir = path.join(tmp, 'tfjs');
    const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
    await m.save(dir, {format: 'tfjs'});
    m.dispose();
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    json.userDefinedMetadata.griffin.config.intermediate_size = 256;
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    expect(await loadError(dir)).toBe(
      `${dir}/model.json: tensor "model.layers.0.mlp_block.gate_proj.weight" has shape [96,64], but ${dir}/model.json (hidden_size, intermediate_size) implies [128,64]`,
    );
  });
});

describe('LoRA rank and the memory of a fine-tuning job', () => {
  test("a rank above a targeted layer's smaller dimension is refused before any adapter is made", async () => {
    const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
    const before = tf.memory().numTensors;
    expect(() => addLora(m, {rank: 17})).toThrow(
      'LoRA rank 17 is above 16, the smaller dimension of model.layers.2.temporal_block.k_proj [16 x 64]',
    );
    expect(tf.memory().numTensors).toBe(before);
    expect(loraAdapters(m).size).toBe(0);
    addLora(m, {rank: 17, targets: ['q_proj', 'linear_x']}); // 64 x 64 layers only
    m.dispose();
  });

  test('finetune with --lora-rank 100000 fails at once, before the model is loaded', async () => {
    const t0 = Date.now();
    await expect(
      finetune({model: withConfig({}), data: DATA, out: path.join(tmp, 'o1'), steps: 1, lora: {rank: 100000}}),
    ).rejects.toThrow(
      /^LoRA rank 100000 is above 64, the smaller dimension of model\.layers\.0\.mlp_block\.gate_proj \[96 x 64\]/,
    );
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(fs.existsSync(path.join(tmp, 'o1'))).toBe(false);
  });

  test('the memory floor, hand-counted for tiny-a; a job past the machine is refused with the numbers', () => {
    const config = RecurrentGemmaConfig.fromJSON(CONFIG);
    // LoRA rank 2 on q_proj: one attention layer (layer 2), q_proj 64 x 64: 2 * (64 + 64) = 256 values.
    const b = trainingBytes(config, {
      batchSize: 3,
      seqLen: 10,
      lora: {rank: 2, targets: ['q_proj']},
      weightBytes: 1000,
    });
    expect(b).toEqual({
      weights: 1000 + 4 * 256,
      optimizer: 3 * 4 * 256,
      logits: 2 * 4 * 3 * 10 * 512,
      total: 1000 + 1024 + 3072 + 122880,
    });
    const huge = {batchSize: 4096, seqLen: 2 ** 20};
    const gibLogits = ((2 * 4 * 4096 * 2 ** 20 * 512) / 2 ** 30).toFixed(1);
    expect(() => checkTrainingFits(config, huge, 'cpu')).toThrow(
      new RegExp(`logits of --batch-size 4096 x --seq-len 1048576 ${gibLogits} GiB\\), more than the machine's memory`),
    );
    expect(() => checkTrainingFits(config, {batchSize: 64, seqLen: 2 ** 16}, 'wasm')).toThrow(
      /more than the wasm backend's heap \(4\.0 GiB\)/,
    );
    expect(() => checkTrainingFits(config, {batchSize: 4, seqLen: 512}, 'wasm')).not.toThrow();
  });
});

test('options that size a job are bounded: out of range is a one-line usage error, exit 2', () => {
  const griffin = (args: string[]) =>
    spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'src/cli.ts'), ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
  const model = withConfig({});
  const cases: [string[], string][] = [
    [
      ['finetune', '--model', model, '--data', DATA, '--out', 'x', '--seq-len', '2000000'],
      "error: option '--seq-len <n>' argument '2000000' is invalid. --seq-len must be an integer from 2 to 1048576.",
    ],
    [
      ['finetune', '--model', model, '--data', DATA, '--out', 'x', '--batch-size', '5000'],
      "error: option '--batch-size <n>' argument '5000' is invalid. --batch-size must be an integer from 1 to 4096.",
    ],
    [
      ['generate', '--model', model, '--prompt', 'x', '--max-new-tokens', '99999999'],
      "error: option '--max-new-tokens <n>' argument '99999999' is invalid. --max-new-tokens must be an integer from 1 to 1048576.",
    ],
  ];
  for (const [args, message] of cases) {
    const r = griffin(args);
    expect(r.stderr).toBe(`${message}\n`);
    expect(r.status).toBe(2);
  }
});
