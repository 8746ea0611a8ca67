/**
 * Chat templates from the checkpoint (tokenizer_config.json's chat_template, rendered with
 * @huggingface/jinja): tok.applyChatTemplate equals transformers' apply_chat_template
 * (test/fixtures/hf-goldens/golden_chat.json from make_goldens.py) for Gemma's template and a
 * custom one, texts and ids, and a template that raises gives the same message in one line.
 * Without a template the built-in Gemma one is used.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {ChatMessage, encodeChat, GemmaTokenizer, renderChat} from '../../src/tokenizer';
import {ChatTemplateError, renderChatTemplate} from '../../src/tokenizer/chat_template';
import {GEMMA_DIR} from '../helpers';

jest.setTimeout(120_000);

const FIX = path.join(__dirname, '../fixtures');
const GOLDENS = path.join(FIX, 'hf-goldens');
const GOLDEN = path.join(GOLDENS, 'golden_chat.json');

let gemma: GemmaTokenizer;
let custom: GemmaTokenizer;
let tmp: string;
beforeAll(async () => {
  gemma = await GemmaTokenizer.load(GEMMA_DIR);
  // The same tokenizer with the custom template as its chat_template.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-chat-'));
  fs.symlinkSync(path.join(GEMMA_DIR, 'tokenizer.json'), path.join(tmp, 'tokenizer.json'));
  const cfg = JSON.parse(fs.readFileSync(path.join(GEMMA_DIR, 'tokenizer_config.json'), 'utf8'));
  cfg.chat_template = fs.readFileSync(path.join(GOLDENS, 'custom_template.jinja'), 'utf8');
  fs.writeFileSync(path.join(tmp, 'tokenizer_config.json'), JSON.stringify(cfg));
  custom = await GemmaTokenizer.load(tmp);
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

const U: ChatMessage = {role: 'user', content: 'What is the capital of France?'};
const A: ChatMessage = {role: 'assistant', content: '  Paris.  \n'};

test("Gemma's own template: the Gemma turn format, BOS written by the template", () => {
  expect(gemma.applyChatTemplate([U, A, U], {addGenerationPrompt: true})).toBe(
    '<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n' +
      '<start_of_turn>model\nParis.<end_of_turn>\n' +
      '<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n',
  );
  const ids = gemma.applyChatTemplate([U], {addGenerationPrompt: true, tokenize: true});
  expect(ids.slice(0, 2)).toEqual([gemma.bosId, gemma.startOfTurnId]);
  expect(ids.filter((i) => i === gemma.bosId)).toHaveLength(1);
  expect(encodeChat(gemma, [U], {addGenerationPrompt: true})).toEqual(ids);
});

test('a template that raises, or does not parse, is a one-line ChatTemplateError', () => {
  const sys: ChatMessage = {role: 'system', content: 'be terse'};
  expect(() => gemma.applyChatTemplate([sys, U])).toThrow(
    new ChatTemplateError('chat template: System role not supported'),
  );
  expect(() => renderChatTemplate('{% if %}', [])).toThrow(/^chat template: does not parse \(/);
});

test('without a chat_template the built-in Gemma template is used', async () => {
  const tiny = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
  expect(tiny.chatTemplate).toBeNull();
  const msgs: ChatMessage[] = [{role: 'system', content: 'be terse'}, U, {role: 'model', content: 'Paris.'}, U];
  expect(tiny.applyChatTemplate(msgs, {addGenerationPrompt: true})).toBe(
    `${tiny.idToPiece(tiny.bosId)}${renderChat(msgs, {addGenerationPrompt: true})}`,
  );
  expect(tiny.applyChatTemplate(msgs, {addGenerationPrompt: true, tokenize: true})).toEqual(
    encodeChat(tiny, msgs, {addGenerationPrompt: true}),
  );
});

const golden = JSON.parse(fs.readFileSync(GOLDEN, 'utf8'));
describe("equals transformers' apply_chat_template", () => {
  type Row = {
    template: string;
    messages: ChatMessage[];
    add_generation_prompt: boolean;
    text?: string;
    ids?: number[];
    error?: string;
  };
  for (const [i, r] of (golden.chats as Row[]).entries()) {
    const name = `${i}: ${r.template}, ${r.messages.map((m) => m.role).join('/')}${r.add_generation_prompt ? ' + prompt' : ''}`;
    test(name, () => {
      const tok = r.template === 'gemma' ? gemma : custom;
      const opts = {addGenerationPrompt: r.add_generation_prompt};
      if (r.error != null) {
        expect(() => tok.applyChatTemplate(r.messages, opts)).toThrow(
          new ChatTemplateError(`chat template: ${r.error}`),
        );
        return;
      }
      expect(tok.applyChatTemplate(r.messages, opts)).toBe(r.text);
      expect(tok.applyChatTemplate(r.messages, {...opts, tokenize: true})).toEqual(r.ids);
    });
  }
});
