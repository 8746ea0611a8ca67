/**
 * Every tokenizer error names its file: a malformed tokenizer.json (not JSON, a vocabulary id that
 * is no integer, added_tokens that are no list) and a malformed tokenizer_config.json (not JSON,
 * fields of the wrong type, a chat template that does not parse) are refused in one line that
 * starts with the file's path.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GemmaTokenizer} from '../../src/tokenizer';

const TINY_MODEL = path.join(__dirname, '../fixtures/tokenizer/tiny.model');
let tmp: string;
let n = 0;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-tokerr-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

/** A directory holding the given files (strings written as they are). */
function dir(files: Record<string, string>): string {
  const d = path.join(tmp, `d${n++}`);
  fs.mkdirSync(d);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(d, name), text);
  return d;
}

const bpe = (vocab: Record<string, unknown>, added: unknown = []) =>
  JSON.stringify({
    model: {type: 'BPE', byte_fallback: true, vocab, merges: []},
    normalizer: {type: 'Replace', pattern: {String: ' '}, content: '▁'},
    added_tokens: added,
  });

async function loadError(d: string): Promise<string> {
  try {
    await GemmaTokenizer.load(d);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('loaded');
}

describe('a malformed tokenizer.json', () => {
  test.each([
    ['not JSON', '{"model": {', 'not valid JSON'],
    ['a JSON list', '[1, 2]', 'not a Hugging Face tokenizer.json (no model.vocab)'],
    ['an id that is a string', bpe({'<pad>': 0, a: 'x'}), `model.vocab['a'] is "x", not a token id`],
    ['a negative id', bpe({'<pad>': -3}), `model.vocab['<pad>'] is -3, not a token id`],
    ['added_tokens not a list', bpe({'<pad>': 0}, {a: 1}), 'added_tokens is not a list'],
    ['an added token without an id', bpe({'<pad>': 0}, [{content: '<x>'}]), 'an added_tokens entry without'],
  ])('%s', async (_, text, says) => {
    const d = dir({'tokenizer.json': text});
    const msg = await loadError(d);
    expect(msg.startsWith(`${path.join(d, 'tokenizer.json')}: `)).toBe(true);
    expect(msg).toContain(says);
    expect(msg).not.toContain('\n');
  });
});

describe('a malformed tokenizer_config.json (beside a good tokenizer.model)', () => {
  const model = fs.readFileSync(TINY_MODEL);
  test.each([
    ['not JSON', '{"add_bos_token": tru', 'not valid JSON'],
    ['a list', '[]', 'not a JSON object'],
    ['add_bos_token a string', '{"add_bos_token": "yes"}', 'add_bos_token is "yes", not true or false'],
    ['bos_token a number', '{"bos_token": 2}', 'bos_token is 2, not a string or {content}'],
    ['chat_template a number', '{"chat_template": 7}', 'chat_template is 7, not a string'],
    [
      'a chat template that does not parse',
      '{"chat_template": "{% for m in messages %}"}',
      'chat template: does not parse',
    ],
  ])('%s', async (_, text, says) => {
    const d = dir({'tokenizer_config.json': text});
    fs.writeFileSync(path.join(d, 'tokenizer.model'), model);
    const msg = await loadError(d);
    expect(msg.startsWith(`${path.join(d, 'tokenizer_config.json')}: `)).toBe(true);
    expect(msg).toContain(says);
    expect(msg).not.toContain('\n');
  });

  test('the same directory with a good config loads (the model file was not the problem)', async () => {
    const d = dir({'tokenizer_config.json': '{"add_bos_token": false, "chat_template": "{{ bos_token }}"}'});
    fs.writeFileSync(path.join(d, 'tokenizer.model'), model);
    const tok = await GemmaTokenizer.load(d);
    expect(tok.addBosDefault).toBe(false);
    expect(tok.chatTemplate).toBe('{{ bos_token }}');
  });
});
