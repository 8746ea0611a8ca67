/**
 * `griffin convert --dtype int4 --calibration` (converters/calibrated_export.ts): the export, loaded
 * back as it is, holds the very packed words, scales and zero points of fromPretrained(dir, {dtype:
 * 'int4', calibration}) on the same weights and text, so its logits are equal; they differ from
 * the data-free int4 fit's. Its peak-memory estimate is checked against a hand count of tiny-a's
 * matrices; bad flags, a missing file, an int4 source, a missing tokenizer and a machine too small
 * are one-line refusals that leave nothing behind.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {calibrationMemory, exportCalibrated} from '../../converters/calibrated_export';
import {listCheckpoint} from '../../converters/safetensors';
import {openTensorSource} from '../../converters/tfjs_export';
import {CompactParameter} from '../../layers/compact';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {runGriffin} from '../cli_run';

const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
const TOKENIZER = path.join(__dirname, '../fixtures/tokenizer/tiny.model');
let tmp: string, ckpt: string, text: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-calib-'));
  // tiny-a (vocabulary 512) with the tiny tokenizer of the same vocabulary beside it.
  ckpt = path.join(tmp, 'ckpt');
  fs.mkdirSync(ckpt);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(ckpt, f));
  fs.copyFileSync(TOKENIZER, path.join(ckpt, 'tokenizer.model'));
  text = path.join(tmp, 'calib.txt');
  const docs = [
    'The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. ',
    'A river runs through the valley, and the people of the town walk along it every evening. ',
    'Numbers such as 12, 345 and 6789 appear in the ledger, next to the names of the traders. ',
  ];
  fs.writeFileSync(text, docs.map((d) => d.repeat(30)).join('\n\n'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

const run = (args: string[]) => runGriffin(['convert', ...args]);

const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400, 354, 313],
  [2, 151, 472, 279, 89, 208, 152, 327, 8, 504],
];

function logits(m: RecurrentGemmaForCausalLM): Float32Array {
  const out = m.forward({inputIds: IDS}).logits;
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return v;
}

/** Each compact matrix's words, scales and zero points, by name. */
function packed(m: RecurrentGemmaForCausalLM): Map<string, number[][]> {
  const out = new Map<string, number[][]>();
  for (const [name, v] of m.namedParameters()) {
    if (!(v instanceof CompactParameter)) continue;
    const p = v.packed;
    out.set(
      name,
      [p.data, p.scales, p.zeros].map((t) => Array.from(t.dataSync())),
    );
  }
  return out;
}

const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => /\.atomic-|\.(tmp|old)-/.test(f));

describe.each([
  {label: 'symmetric', zeroPoints: false},
  {label: 'zero points', zeroPoints: true},
])('a calibrated int4 export ($label)', ({zeroPoints}) => {
  test('loads as it is, with the packed words and logits of fromPretrained(dir, {dtype: int4, calibration})', async () => {
    const out = path.join(tmp, `gptq-${zeroPoints ? 'zp' : 'sym'}`);
    const flags = ['--dtype', 'int4', '--group-size', '32', '--calibration', text, '--calibration-tokens', '256'];
    const r = await run(['--from', ckpt, '--out', out, ...flags, ...(zeroPoints ? ['--zero-points'] : [])]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/GPTQ needs activations, so the float32 model is loaded whole, not tensor by tensor/);
    expect(r.stderr).toMatch(/, GPTQ on .*calib\.txt, weights/);
    expect(fs.readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.json', 'tokenizer.model']);
    const opts: PretrainedOptions = {dtype: 'int4', groupSize: 32, zeroPoints};
    const exported = await RecurrentGemmaForCausalLM.fromPretrained(out, {dtype: 'auto'});
    const direct = await RecurrentGemmaForCausalLM.fromPretrained(ckpt, {
      ...opts,
      calibration: text,
      calibrationTokens: 256,
    });
    const plain = await RecurrentGemmaForCausalLM.fromPretrained(ckpt, opts);
    try {
      const [e, d, p] = [packed(exported), packed(direct), packed(plain)];
      expect([...e.keys()].sort()).toEqual([...d.keys()].sort());
      expect(e.size).toBeGreaterThan(10);
      for (const [name, v] of d) expect({name, v: e.get(name)}).toEqual({name, v});
      // GPTQ moved the words of every matrix away from the data-free fit's.
      for (const [name, v] of p)
        expect({name, same: v[0].every((w, i) => w === d.get(name)![0][i])}).toEqual({name, same: false});
      expect(logits(exported)).toEqual(logits(direct));
    } finally {
      for (const m of [exported, direct, plain]) m.dispose();
    }
  });
});

test("the peak-memory estimate: tiny-a's calibrated matrices' C * C float64 moments, the float32 model, one forward", () => {
  const need = calibrationMemory(openTensorSource(TINY_A));
  // Counted by hand from config.json: widths D = lru = 64, MLP 192 / 2 = 96, 4 heads of 16 (1 kv head).
  // Recurrent block (x3): linear_x, linear_y, linear_out, gate, up on 64 inputs, down on 96.
  // Attention block (x1): q, k, v, o on 64 inputs, gate, up on 64, down on 96. The tied head: 64.
  const recurrent = 5 * 64 * 64 + 96 * 96;
  const attention = 6 * 64 * 64 + 96 * 96;
  expect(need.moments).toBe((3 * recurrent + attention + 64 * 64) * 8);
  // The float32 model: every value the checkpoint's header lists (the tied head's copy aside), 4 bytes each.
  let values = 0;
  for (const m of listCheckpoint(TINY_A).values())
    if (m.name !== 'lm_head.weight') values += m.shape.reduce((a, b) => a * b, 1);
  expect(need.model).toBe(values * 4);
  // 8 rows of 256 tokens: logits twice (V = 512), 5 hidden states of 64, four 192-wide temporaries.
  expect(need.activations).toBe(8 * 256 * 4 * (2 * 512 + 5 * 64 + 4 * 192));
  expect(need.fit).toBe(3 * 96 * 96 * 8);
  expect(need.total).toBe(need.model + need.moments + need.activations + need.fit);
});

describe('refusals: one line, nothing written', () => {
  test('usage errors exit 2', async () => {
    const out = path.join(tmp, 'never');
    for (const [args, re] of [
      [
        ['--dtype', 'int8', '--calibration', 'default'],
        /^griffin: --calibration fits int4 weights: use it with --dtype int4$/,
      ],
      [['--calibration', 'default'], /--calibration fits int4 weights: use it with --dtype int4/],
      [['--dtype', 'int4', '--calibration-tokens', '512'], /--calibration-tokens is for --calibration/],
      [['--dtype', 'int4', '--calibration', path.join(tmp, 'none.txt')], /--calibration: file not found: .*none\.txt/],
      [['--dtype', 'int4', '--calibration', tmp], /--calibration must be a file: /],
      [
        ['--dtype', 'int4', '--calibration', 'default', '--calibration-tokens', '100'],
        /--calibration-tokens must be an integer in \[256, 4194304\]/,
      ],
      [
        ['--dtype', 'int4', '--calibration', 'default', '--calibration-tokens', '300.5'],
        /--calibration-tokens must be an integer/,
      ],
      [
        ['--dtype', 'int4', '--calibration', 'default', '--calibration-tokens', 'many'],
        /--calibration-tokens must be an integer/,
      ],
    ] as [string[], RegExp][]) {
      const r = await run(['--from', ckpt, '--out', out, ...args]);
      expect({args, code: r.code, lines: r.stderr.trim().split('\n').length}).toEqual({args, code: 2, lines: 1});
      expect(r.stderr.trim()).toMatch(re);
    }
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });

  test('an int4 source, a source without a tokenizer, too little text, exit 1; a machine too small', async () => {
    const int4 = path.join(tmp, 'plain-int4');
    expect((await run(['--from', ckpt, '--out', int4, '--dtype', 'int4', '--group-size', '32'])).code).toBe(0);
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare);
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(bare, f));
    const short = path.join(tmp, 'short.txt');
    fs.writeFileSync(short, 'Too short.');
    const out = path.join(tmp, 'never2');
    const base = ['--out', out, '--dtype', 'int4', '--group-size', '32'];
    const cases: [string[], RegExp][] = [
      [
        ['--from', int4, ...base, '--calibration', text],
        /plain-int4: is already int4; calibration needs a float checkpoint/,
      ],
      [
        ['--from', bare, ...base, '--calibration', text, '--no-tokenizer'],
        /tokenizer: no tokenizer\.json or tokenizer\.model in .*bare/,
      ],
      [['--from', ckpt, ...base, '--calibration', short], /short\.txt holds \d+ tokens, fewer than one row of 256/],
    ];
    for (const [args, re] of cases) {
      const r = await run(args);
      expect({args, code: r.code, lines: r.stderr.trim().split('\n')}).toEqual({
        args,
        code: 1,
        lines: [expect.stringMatching(re)],
      });
    }
    // The machine's memory is the default bound; a smaller one is refused before anything is read.
    const src = openTensorSource(ckpt);
    await expect(
      exportCalibrated(src, out, {dtype: 'int4', groupSize: 32, calibration: text, maxBytes: 1e6}),
    ).rejects.toThrow(/^calibration needs about \d+\.\d MB \(.*\), more than 1\.0 MB; convert without calibration/);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });
});
