/**
 * src/util/host_trace.ts through generate on tiny-a (cpu): by default a call's trace closes at its
 * first token (its step phases marked once); with wholeRun (GRIFFIN_TRACE=run) it runs to the last,
 * each step's phases marked once per step; the phases sum to the trace's total; off: no trace.
 */
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {type HostTraceSummary, hostTraceConfig, hostTraceWholeRun} from '../../src/util/host_trace';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
let model: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
});
afterAll(() => model.dispose());
afterEach(() => {
  hostTraceConfig.enabled = null;
  hostTraceConfig.wholeRun = null;
  hostTraceConfig.onTrace = null;
  delete process.env.GRIFFIN_TRACE;
});

async function traced(wholeRun: boolean | null, newTokens: number): Promise<HostTraceSummary[]> {
  const got: HostTraceSummary[] = [];
  hostTraceConfig.enabled = true;
  hostTraceConfig.wholeRun = wholeRun;
  hostTraceConfig.onTrace = (t) => got.push(t);
  await model.generate([[2, 17, 99, 4]], {temperature: 0, maxNewTokens: newTokens, eosTokenId: []});
  return got;
}

test('first token only by default: one trace, each step phase marked once', async () => {
  const [t, ...rest] = await traced(null, 5);
  expect(rest).toEqual([]);
  expect(t.label).toBe('generate');
  expect(t.marks['wait.ids']).toBe(1);
  expect(t.marks.judge).toBe(1);
  const sum = Object.values(t.phases).reduce((a, b) => a + b, 0);
  expect(Math.abs(sum - t.totalMs)).toBeLessThan(1e-6 * Math.max(1, t.totalMs));
});

test('wholeRun: one trace to the last token, each step phase marked once per step', async () => {
  const [t, ...rest] = await traced(true, 5);
  expect(rest).toEqual([]);
  expect(t.marks['wait.ids']).toBe(5);
  expect(t.marks.judge).toBe(5);
  expect(t.marks.prefill).toBe(1);
  const sum = Object.values(t.phases).reduce((a, b) => a + b, 0);
  expect(Math.abs(sum - t.totalMs)).toBeLessThan(1e-6 * Math.max(1, t.totalMs));
});

test('GRIFFIN_TRACE=run turns tracing on for whole runs; =1 for first tokens; off: no trace', async () => {
  process.env.GRIFFIN_TRACE = 'run';
  expect(hostTraceWholeRun()).toBe(true);
  const got: HostTraceSummary[] = [];
  hostTraceConfig.onTrace = (t) => got.push(t);
  await model.generate([[2, 17, 99, 4]], {temperature: 0, maxNewTokens: 3, eosTokenId: []});
  expect(got.map((t) => t.marks.judge)).toEqual([3]);
  process.env.GRIFFIN_TRACE = '1';
  expect(hostTraceWholeRun()).toBe(false);
  got.length = 0;
  await model.generate([[2, 17, 99, 4]], {temperature: 0, maxNewTokens: 3, eosTokenId: []});
  expect(got.map((t) => t.marks.judge)).toEqual([1]);
  delete process.env.GRIFFIN_TRACE;
  got.length = 0;
  await model.generate([[2, 17, 99, 4]], {temperature: 0, maxNewTokens: 3, eosTokenId: []});
  expect(got).toEqual([]);
});
