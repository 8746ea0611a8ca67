/**
 * `griffin generate` and `griffin chat` as real processes (src/cli.ts through tsx), on a model
 * directory assembled from tiny-a and the tiny tokenizer: output equals the library's greedy
 * tokens decoded, speeds go to stderr, and user mistakes end in one line and a non-zero exit.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {encodeChat, GemmaTokenizer} from '../../src/tokenizer';
import {TWO_B_CONFIG} from '../helpers';

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const FIX = path.join(__dirname, '../fixtures');

let dir: string;
let model: RecurrentGemmaForCausalLM;
let tok: GemmaTokenizer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-cli-'));
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIX, 'tiny-a', f), path.join(dir, f));
  fs.copyFileSync(path.join(FIX, 'tokenizer/tiny.model'), path.join(dir, 'tokenizer.model'));
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  tok = await GemmaTokenizer.load(path.join(dir, 'tokenizer.model'));
});
afterAll(() => {
  model.dispose();
  fs.rmSync(dir, {recursive: true, force: true});
});

function griffin(args: string[], input?: string) {
  const r = spawnSync(TSX, [path.join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    input,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return {code: r.status, stdout: r.stdout, stderr: r.stderr};
}

/** The text the CLI should print: the new tokens of a greedy run, special tokens dropped. */
async function expectedText(
  ids: number[],
  maxNewTokens: number,
  state?: unknown,
): Promise<{text: string; out: number[]}> {
  const [out] = await model.generate([ids], {
    maxNewTokens,
    temperature: 0,
    tokenizer: tok,
    ...(state ? {state} : {}),
  } as never);
  return {text: tok.decode(out.slice(ids.length), {skipSpecial: true}), out};
}

test('generate: greedy text on stdout, tokens/s on stderr, exit 0', async () => {
  const prompt = 'The history of the world';
  const r = griffin([
    'generate',
    '--model',
    dir,
    '--prompt',
    prompt,
    '--temperature',
    '0',
    '--max-new-tokens',
    '24',
    '--backend',
    'cpu',
  ]);
  expect(r.stderr).toMatch(/prompt: \d+ tokens, [\d.]+ tokens\/s; decode: 24 tokens, [\d.]+ tokens\/s/);
  expect(r.code).toBe(0);
  const {text} = await expectedText(tok.encode(prompt), 24);
  expect(text.length).toBeGreaterThan(0);
  // The text ends with a newline, so that the statistics line starts on its own line in a terminal.
  expect(r.stdout).toBe(`${text}\n`);
});

test('generate reads the prompt from stdin: --prompt -, or no --prompt with stdin piped', async () => {
  const prompt = 'The history of the world';
  const {text} = await expectedText(tok.encode(prompt), 6);
  const common = ['--model', dir, '--temperature', '0', '--max-new-tokens', '6', '--backend', 'cpu'];
  // echo's final newline is not part of the prompt.
  for (const args of [
    ['generate', '--prompt', '-', ...common],
    ['generate', ...common],
  ]) {
    const r = griffin(args, `${prompt}\n`);
    expect(r.stderr).toMatch(new RegExp(`^prompt: ${tok.encode(prompt).length} tokens`));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${text}\n`);
  }
  const multi = 'line one\nline two';
  const r = griffin(['generate', '--prompt', '-', ...common], multi);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${(await expectedText(tok.encode(multi), 6)).text}\n`);
});

test('generate --chat wraps the prompt in the chat template; sampling with a seed is reproducible', async () => {
  const r = griffin([
    'generate',
    '--model',
    dir,
    '--prompt',
    'Hi there',
    '--chat',
    '--temperature',
    '0',
    '--max-new-tokens',
    '10',
    '--backend',
    'cpu',
  ]);
  expect(r.code).toBe(0);
  const ids = encodeChat(tok, [{role: 'user', content: 'Hi there'}], {addGenerationPrompt: true});
  expect(r.stdout).toBe(`${(await expectedText(ids, 10)).text}\n`);
  const args = [
    'generate',
    '--model',
    dir,
    '--prompt',
    'Once',
    '--temperature',
    '2',
    '--top-k',
    '50',
    '--top-p',
    '0.9',
    '--seed',
    '5',
    '--max-new-tokens',
    '16',
    '--backend',
    'cpu',
  ];
  const a = griffin(args),
    b = griffin(args);
  expect(a.code).toBe(0);
  expect(a.stdout).toBe(b.stdout);
  expect(a.stderr).toMatch(/seed 5/);
});

test('chat: each turn is prefilled onto the kept state and answers as the whole history would', async () => {
  const turns = ['hello there', 'and then what'];
  const r = griffin(
    ['chat', '--model', dir, '--temperature', '0', '--max-new-tokens', '8', '--backend', 'cpu'],
    `${turns.join('\n')}\n`,
  );
  expect(r.code).toBe(0);
  const stats = r.stderr.trim().split('\n');
  expect(stats).toHaveLength(2);
  expect(stats[1]).toMatch(/reply: \d+ tokens, [\d.]+ tokens\/s; context \d+ tokens/);
  // Reference: greedy over the full token history, from scratch each turn.
  const t1 = encodeChat(tok, [{role: 'user', content: turns[0]}], {addGenerationPrompt: true});
  const r1 = await expectedText(t1, 8);
  const last = r1.out[r1.out.length - 1];
  const t2 = [
    ...r1.out,
    ...(last === tok.endOfTurnId ? [] : [tok.endOfTurnId]),
    ...tok.encode('\n', {addBos: false}),
    ...encodeChat(tok, [{role: 'user', content: turns[1]}], {addGenerationPrompt: true}).slice(1),
  ];
  const r2 = await expectedText(t2, 8);
  expect(r.stdout).toBe(`${r1.text}\n${r2.text}\n`);
  // The second turn read only its own tokens, not the history.
  expect(stats[1]).toContain(`prompt: ${t2.length - r1.out.length} tokens`);
});

test('without --backend, a model too big for the wasm heap runs on cpu (said on stderr)', () => {
  // A 2B-shaped config.json with no weights: the backend is chosen from the config, then the
  // missing safetensors end the run in one line.
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-cli-2b-'));
  fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(d, 'tokenizer.model'));
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({model_type: 'recurrent_gemma', ...TWO_B_CONFIG}));
  const r = griffin(['generate', '--model', d, '--prompt', 'x']);
  fs.rmSync(d, {recursive: true, force: true});
  const lines = r.stderr.trim().split('\n');
  expect(lines[0]).toBe(
    "backend cpu: the model's 10.0 GiB of float32 weights do not fit the wasm backend's 4 GiB heap",
  );
  expect(r.code).not.toBe(0);
  expect(lines).toHaveLength(2);
});

describe('mistakes end in one line and a non-zero exit', () => {
  const cases: [string, () => string[], RegExp][] = [
    [
      'no such directory',
      () => ['generate', '--model', path.join(dir, 'nope'), '--prompt', 'x'],
      /--model: directory not found/,
    ],
    [
      'no tokenizer',
      () => ['generate', '--model', path.join(FIX, 'tiny-a'), '--prompt', 'x'],
      /no tokenizer\.json or tokenizer\.model in /,
    ],
    ['empty prompt', () => ['generate', '--model', dir, '--prompt', ''], /--prompt is empty/],
    ['missing prompt (stdin empty)', () => ['generate', '--model', dir], /--prompt: standard input is empty/],
    ['--prompt - with empty stdin', () => ['generate', '--model', dir, '--prompt', '-'], /standard input is empty/],
    ['unknown option', () => ['generate', '--model', dir, '--prompt', 'x', '--bogus'], /unknown option/],
    [
      'bad integer',
      () => ['generate', '--model', dir, '--prompt', 'x', '--max-new-tokens', '2.5'],
      /--max-new-tokens must be an integer/,
    ],
    [
      'bad number',
      () => ['generate', '--model', dir, '--prompt', 'x', '--temperature', 'hot'],
      /--temperature must be a number/,
    ],
    ['top-p out of range', () => ['generate', '--model', dir, '--prompt', 'x', '--top-p', '1.5'], /--top-p must be in/],
    ['unknown backend', () => ['generate', '--model', dir, '--prompt', 'x', '--backend', 'tpu'], /unknown backend/],
    [
      'not a checkpoint',
      () => {
        const d = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-cli-empty-'));
        fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(d, 'tokenizer.model'));
        return ['generate', '--model', d, '--prompt', 'x', '--backend', 'cpu'];
      },
      /neither a Hugging Face checkpoint/,
    ],
  ];
  for (const [name, args, message] of cases) {
    test(name, () => {
      const r = griffin(args());
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }
});
