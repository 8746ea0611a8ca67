/**
 * fromPretrained(url) in Node (no browser needed): the tfjs format over http from scripts/serve.js,
 * against the HF fixture's logits; byte progress; one-line errors for a missing model, a corrupt
 * shard and a model.json not written by this package.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, relError} from '../helpers';

const FIXTURE = path.join(__dirname, '../fixtures/tiny-a');
const IDS = [[2, 342, 48, 451, 411, 374, 280, 400, 354, 313]];
let tmp: string;
let server: {url: string; close(): Promise<void>};
let reference: Float32Array;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-url-'));
  const model = await RecurrentGemmaForCausalLM.fromPretrained(FIXTURE);
  reference = model.forward({inputIds: IDS}).logits.dataSync() as Float32Array;
  await model.save(path.join(tmp, 'f32'), {format: 'tfjs', shardBytes: 100_000});
  await model.save(path.join(tmp, 'f16'), {format: 'tfjs', dtype: 'float16'});
  await model.save(path.join(tmp, 'bad'), {format: 'tfjs'});
  model.dispose();
  fs.truncateSync(path.join(tmp, 'bad/group1-shard1of1.bin'), 1000);
  fs.mkdirSync(path.join(tmp, 'foreign'));
  fs.writeFileSync(path.join(tmp, 'foreign/model.json'), JSON.stringify({modelTopology: {}, weightsManifest: []}));
  const {startServer} = require('../../scripts/serve.js');
  server = await startServer({root: tmp});
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, {recursive: true, force: true});
});

test("a tfjs model over http: the same logits as the HF checkpoint, progress in bytes up to the shards' size", async () => {
  const events: {loaded: number; total: number; name: string}[] = [];
  const model = await RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/f32/`, {
    onProgress: (p) => events.push(p),
  });
  expect(maxAbsDiff(model.forward({inputIds: IDS}).logits.dataSync(), reference)).toBe(0);
  model.dispose();
  const shards = fs.readdirSync(path.join(tmp, 'f32')).filter((f) => f.endsWith('.bin'));
  const bytes = shards.reduce((s, f) => s + fs.statSync(path.join(tmp, 'f32', f)).size, 0);
  expect(shards.length).toBeGreaterThan(3);
  expect(new Set(events.map((e) => e.name))).toEqual(new Set(shards));
  expect(events.every((e, i) => e.total === bytes && (i === 0 || e.loaded >= events[i - 1].loaded))).toBe(true);
  expect(events[events.length - 1].loaded).toBe(bytes);
});

test('a float16 model by its model.json URL: within 1e-3 of the float32 logits', async () => {
  const model = await RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/f16/model.json`);
  const err = relError(model.forward({inputIds: IDS}).logits.dataSync(), reference);
  model.dispose();
  expect(err).toBeLessThan(1e-3);
  expect(err).toBeGreaterThan(0);
});

test('bad URLs are one-line errors naming the URL, and leave nothing allocated', async () => {
  const before = tf.memory().numTensors;
  await expect(RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/missing/`)).rejects.toThrow(
    /^.*\/missing\/model\.json: HTTP 404/,
  );
  await expect(RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/bad/`)).rejects.toThrow(
    /bad\/model\.json: the shards hold 1000 bytes, the manifest needs \d+ \(truncated or corrupt\)/,
  );
  await expect(RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/foreign/`)).rejects.toThrow(
    /foreign\/model\.json: no userDefinedMetadata\.griffin\.config/,
  );
  await expect(RecurrentGemmaForCausalLM.fromPretrained('indexeddb://nothing')).rejects.toThrow(
    /indexeddb:\/\/nothing: /,
  );
  expect(tf.memory().numTensors).toBe(before);
});
