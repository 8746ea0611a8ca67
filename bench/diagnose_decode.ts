/**
 * Decode logits of one random model three ways on one machine: the fused WebGPU engine, tfjs ops
 * on webgpu, and tfjs ops on cpu (the reference), to tell which GPU path departs from cpu.
 *   node dist/bench/diagnose_decode.js --config 2b --layers 2 --vocab 256000 --steps 2
 */

import {checkpointTensors, readAllTensorData, writeTensorData} from '../converters/checkpoint_tensors';
import {useBackend} from '../src/backend';
import {configArg, intArg, parseArgs, randomizeWeights, relativeError} from '../src/bench/common';
import {RecurrentGemmaConfig} from '../src/config';
import {fusedDecodeConfig} from '../src/engines/webgpu_decode';
import {RecurrentGemmaForCausalLM} from '../src/model';

async function run(model: RecurrentGemmaForCausalLM, steps: number, batch: number): Promise<Float32Array[]> {
  const prompt = Array.from({length: batch}, (_, r) => [
    2,
    17 + r,
    301 % model.config.vocab_size,
    (4000 + r) % model.config.vocab_size,
  ]);
  const state = model.prefill(prompt);
  const out = [Float32Array.from((await state.logits.data()) as Float32Array)];
  for (let i = 0; i < steps; i++) {
    const {logits} = model.decodeStep(
      state,
      Array.from({length: batch}, (_, r) => 3 + ((i * 7 + r) % 100)),
    );
    out.push(Float32Array.from((await logits.data()) as Float32Array));
    logits.dispose();
  }
  state.dispose();
  return out;
}

(async () => {
  const args = parseArgs(process.argv.slice(2));
  const cfg = new RecurrentGemmaConfig(configArg(args, '2b'));
  const steps = intArg(args, 'steps', 2),
    batch = intArg(args, 'batch', 1);
  await useBackend('webgpu');
  const gpu = new RecurrentGemmaForCausalLM(cfg);
  randomizeWeights(gpu);
  fusedDecodeConfig.enabled = true;
  const fused = await run(gpu, steps, batch);
  fusedDecodeConfig.enabled = false;
  const tfjs = await run(gpu, steps, batch);
  const values = await readAllTensorData(gpu);
  gpu.dispose();
  await useBackend('cpu');
  const cpu = new RecurrentGemmaForCausalLM(cfg);
  for (const [name, t] of checkpointTensors(cpu)) writeTensorData(t, values.get(name)!);
  const ref = await run(cpu, steps, batch);
  ref.forEach((r, i) =>
    console.log(
      JSON.stringify({
        layers: cfg.num_hidden_layers,
        vocab: cfg.vocab_size,
        batch,
        step: i,
        fusedVsCpu: +relativeError(fused[i], r).toExponential(2),
        tfjsWebgpuVsCpu: +relativeError(tfjs[i], r).toExponential(2),
        fusedVsTfjs: +relativeError(fused[i], tfjs[i]).toExponential(2),
      }),
    ),
  );
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
