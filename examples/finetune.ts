/**
 * Fine-tunes a model on a tiny chat dataset (examples/data/chat.jsonl) and prints its greedy
 * answer to a question before and after; --out saves the result.
 *   npx tsx examples/finetune.ts                                   # assets/griffin-small, LoRA
 *   npx tsx examples/finetune.ts --model path/to/ckpt --steps 60 --full --out /tmp/tuned
 *
 * Without --model it uses assets/griffin-small when that holds a checkpoint, otherwise the
 * tiny random test model (test/fixtures/tiny-a with the tiny tokenizer). A random model has
 * nothing for LoRA to adapt, so that one is fully fine-tuned and learns the answers by heart:
 * enough to see training work, not a useful model.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {useBackend} from '../src/backend';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {encodeChat, GemmaTokenizer} from '../src/tokenizer';
import {loadJsonl, saveLoraAdapter, Trainer} from '../src/training';

const ROOT = path.join(__dirname, '..');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A model directory with a checkpoint and tokenizer.model. */
function pickModel(): {dir: string; note: string; random?: boolean} {
  const given = arg('model');
  if (given) return {dir: given, note: given};
  const small = path.join(ROOT, 'assets/griffin-small');
  if (['config.json', 'model.json'].some((f) => fs.existsSync(path.join(small, f))))
    return {dir: small, note: 'assets/griffin-small'};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-example-'));
  for (const f of ['config.json', 'model.safetensors'])
    fs.copyFileSync(path.join(ROOT, 'test/fixtures/tiny-a', f), path.join(dir, f));
  fs.copyFileSync(path.join(ROOT, 'test/fixtures/tokenizer/tiny.model'), path.join(dir, 'tokenizer.model'));
  return {dir, note: 'the tiny random test model (assets/griffin-small has no checkpoint)', random: true};
}

async function answer(model: RecurrentGemmaForCausalLM, tok: GemmaTokenizer, question: string): Promise<string> {
  const prompt = encodeChat(tok, [{role: 'user', content: question}], {addGenerationPrompt: true});
  const [row] = await model.generate([prompt], {maxNewTokens: 48, temperature: 0, tokenizer: tok});
  return tok.decode(row.slice(prompt.length), {skipSpecial: true}).trim();
}

async function main(): Promise<void> {
  const backend = await useBackend(arg('backend'));
  const {dir, note, random} = pickModel();
  console.log(`model: ${note}; backend: ${backend}`);
  const tok = await GemmaTokenizer.load(path.join(dir, 'tokenizer.model'));
  const model = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  const data = loadJsonl(path.join(__dirname, 'data/chat.jsonl'), tok, {seqLen: 128});
  const question = 'What is your name?';

  const full = process.argv.includes('--full') || (random === true && !process.argv.includes('--lora'));
  console.log(`${full ? 'full fine-tuning' : 'LoRA, rank 16'} on ${data.examples.length} conversations`);
  console.log(`\nbefore: ${JSON.stringify(await answer(model, tok, question))}`);
  const trainer = new Trainer(model, {
    train: data,
    batchSize: 4,
    steps: Number(arg('steps') ?? 60),
    warmupSteps: 3,
    seed: 0,
    lr: full ? 1e-2 : 2e-2,
    lora: full ? null : {rank: 16, alpha: 32},
    onStep: (s) => {
      if (s.step % 10 === 0 || s.step === s.totalSteps) {
        console.log(
          `step ${s.step}/${s.totalSteps} loss ${s.loss.toFixed(3)} ${Math.round(s.tokensPerSecond)} tok/s, ${s.remainingSeconds.toFixed(0)}s left`,
        );
      }
    },
  });
  await trainer.train();
  trainer.dispose();
  console.log(`\nafter:  ${JSON.stringify(await answer(model, tok, question))}`);

  const out = arg('out');
  if (out) {
    if (full) await model.save(out, {format: 'hf'});
    else await saveLoraAdapter(model, out, {baseModel: dir});
    fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(out, 'tokenizer.model'));
    console.log(`saved ${full ? 'the model' : 'the LoRA adapter'} to ${out}`);
  }
  model.dispose();
}

main().catch((e) => {
  console.error(`finetune example: ${(e as Error).message}`);
  process.exitCode = 1;
});
