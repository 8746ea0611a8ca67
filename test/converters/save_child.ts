/**
 * A child process for the atomic-save tests: builds one of two variants of tiny-a (or of a LoRA
 * adapter on it) and saves it to a directory, as often as asked, so that the parent can kill it
 * with SIGKILL at any moment (GRIFFIN_ATOMIC_KILL_AT stops it at a chosen stage of the swap).
 *   node --import tsx test/converters/save_child.ts DIR hf|tfjs|lora old|new [times]
 */
import * as path from 'path';
import {saveLoraAdapter} from '../../converters/lora_adapter';
import {addLora, loraParameters} from '../../layers/lora';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';

export const TINY_A = path.join(__dirname, '../fixtures/tiny-a');

/** tiny-a, its embedding scaled by 1 (old) or 1.5 (new); for 'lora', with an adapter of seed 1 or 2 and B filled. */
export async function variant(kind: string, which: string): Promise<RecurrentGemmaForCausalLM> {
  const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  const k = which === 'old' ? 1 : 2;
  if (kind === 'lora') {
    addLora(model, {rank: 2, seed: k, targets: ['q_proj', 'o_proj']});
    for (const [name, v] of loraParameters(model)) {
      if (name.includes('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', 7 * k));
    }
  } else if (which === 'new') {
    const emb = model.namedParameters().get('model.embed_tokens.weight')!;
    emb.write(tf.mul(emb.read(), 1.5));
  }
  return model;
}

async function main(): Promise<void> {
  const [dir, kind, which, times] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await variant(kind, which);
  process.stdout.write('saving\n');
  for (let i = 0; i < Number(times ?? 1); i++) {
    if (kind === 'lora') await saveLoraAdapter(model, dir, {baseModel: TINY_A});
    else await model.save(dir, {format: kind as 'hf' | 'tfjs', shardBytes: 20_000});
  }
}

if (require.main === module) main();
