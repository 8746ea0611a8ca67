/**
 * `griffin train-tokenizer` as a real process (src/cli.ts through tsx): it trains a tiny tokenizer on a small
 * text into the same bytes as the library trainer, reproduces the shipped tokenizer with the documented
 * command, and refuses bad options in one line with exit code 2.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GemmaTokenizer} from '../../src/tokenizer';
import {trainBpeTokenizer} from '../../src/tokenizer/train';

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const ASSET = path.join(ROOT, 'assets/griffin-small/tokenizer.model');

const TEXT =
  'The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.\n' +
  'Pack my box with five dozen liquor jugs! Naïve café, 1234 and “quotes”.\n';

function griffin(args: string[]) {
  const cli = path.join(ROOT, 'src/cli.ts');
  const r = spawnSync(TSX, [cli, 'train-tokenizer', ...args], {cwd: ROOT, encoding: 'utf8', timeout: 120_000});
  return {code: r.status, stdout: r.stdout, stderr: r.stderr};
}

let dir: string;
let textFile: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-train-tokenizer-'));
  textFile = path.join(dir, 'small.txt');
  fs.writeFileSync(textFile, TEXT);
});
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

test("trains a tiny tokenizer on a small text: the library trainer's bytes, and it round-trips the text", async () => {
  const out = path.join(dir, 'tiny.model');
  const r = griffin(['--out', out, '--vocab', '400', '--input', textFile]);
  expect(r.stderr).toMatch(/round-trip failures: 0\/1/);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/wrote .*tiny\.model: \d+ bytes, 400 pieces/);
  const expected = trainBpeTokenizer([TEXT], {vocabSize: 400, input: [textFile], modelPrefix: 'tiny'});
  expect(Buffer.from(expected).equals(fs.readFileSync(out))).toBe(true);
  const tok = await GemmaTokenizer.load(out);
  expect(tok.vocabSize).toBe(400);
  expect(tok.decode(tok.encode(TEXT, {addBos: false}))).toBe(TEXT);
});

test('the documented command reproduces the shipped tokenizer byte for byte', () => {
  const out = path.join(dir, 'tokenizer.model');
  const r = griffin(['--out', out, '--vocab', '4096']);
  expect(r.stderr).toMatch(/round-trip failures: 0\/25/);
  expect(r.code).toBe(0);
  expect(fs.readFileSync(out).equals(fs.readFileSync(ASSET))).toBe(true);
});

test.each([
  [['--vocab', '400'], /required option '--out <file>' not specified/],
  [['--out', 'x.model', '--vocab', 'abc'], /--vocab must be an integer from 263 to 1048576/],
  [['--out', 'x.model', '--vocab', '512.5'], /--vocab must be an integer from 263/],
  [['--out', 'x.model', '--vocab', '262'], /--vocab must be an integer from 263/],
  [['--out', 'x.model', '--vocab', '2000000'], /--vocab must be an integer from 263 to 1048576/],
  [['--out', 'x.model', '--coverage', '0'], /--coverage must be a number in \(0, 1\]/],
  [['--out', 'x.model', '--coverage', '1.01'], /--coverage must be a number in \(0, 1\]/],
  [['--out', 'x.model', '--coverage', 'most'], /--coverage must be a number in \(0, 1\]/],
  [['--out', 'no/such/dir/x.model'], /--out: directory not found: .*no\/such\/dir/],
  [['--out', '.'], /--out is a directory: \./],
  [['--out', 'x.model', '--input', 'no-such-file.txt'], /--input: file not found: no-such-file\.txt/],
  [['--out', 'x.model', '--frobnicate'], /unknown option '--frobnicate'/],
])('train-tokenizer %j: one-line usage error, exit 2', (args, message) => {
  const r = griffin(args as string[]);
  expect(r.stderr).toMatch(message as RegExp);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  expect(fs.existsSync(path.join(ROOT, 'x.model'))).toBe(false);
});

test("a vocabulary too small for the text's characters is a usage error, and nothing is written", () => {
  const out = path.join(dir, 'small.model');
  const r = griffin(['--out', out, '--vocab', '263', '--input', textFile]);
  expect(r.stderr).toMatch(/^griffin: --vocab 263: vocabSize 263 leaves no room for the \d+ characters\n$/);
  expect(r.code).toBe(2);
  expect(fs.existsSync(out)).toBe(false);
});
