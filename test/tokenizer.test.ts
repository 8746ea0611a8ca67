import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {ChatMessage, encodeChat, encodeChatForTraining, GemmaTokenizer, renderChat} from '../src/tokenizer';
import {seededUniform} from './helpers';

interface GoldenCase {
  text: string;
  ids: number[];
  pieces: string[];
  decoded: string;
}
const golden = require('./fixtures/tokenizer/golden.json') as {
  vocab_size: number;
  pad_id: number;
  eos_id: number;
  bos_id: number;
  unk_id: number;
  start_of_turn: number;
  end_of_turn: number;
  cases: GoldenCase[];
};
const MODEL = path.join(__dirname, 'fixtures/tokenizer/tiny.model');

let tok: GemmaTokenizer;
beforeAll(async () => {
  tok = await GemmaTokenizer.load(MODEL);
});

function streamAll(ids: number[], skipSpecial = false): string {
  const d = tok.createStreamDecoder({skipSpecial});
  return ids.map((id) => d.push(id)).join('') + d.flush();
}

describe('GemmaTokenizer', () => {
  test('special ids and vocab size come from the model', () => {
    expect(tok.padId).toBe(golden.pad_id);
    expect(tok.eosId).toBe(golden.eos_id);
    expect(tok.bosId).toBe(golden.bos_id);
    expect(tok.unkId).toBe(golden.unk_id);
    expect(tok.startOfTurnId).toBe(golden.start_of_turn);
    expect(tok.endOfTurnId).toBe(golden.end_of_turn);
    expect(tok.vocabSize).toBe(golden.vocab_size);
  });

  test.each(golden.cases.map((c) => [JSON.stringify(c.text), c] as const))('golden %s', (_name, c) => {
    const ids = tok.encode(c.text, {addBos: false});
    expect(ids).toEqual(c.ids);
    expect(ids.map((id) => tok.idToPiece(id))).toEqual(c.pieces);
    expect(c.pieces.map((p) => tok.pieceToId(p))).toEqual(c.ids);
    expect(tok.decode(ids)).toBe(c.decoded);
  });

  test('BOS is prepended by default, and only then', () => {
    expect(tok.encode('Hello world')).toEqual([2, 476, 358, 324, 338, 272, 432, 433]);
    expect(tok.encode('Hello world', {addBos: true})).toEqual([2, 476, 358, 324, 338, 272, 432, 433]);
    expect(tok.encode('Hello world', {addBos: false})).toEqual([476, 358, 324, 338, 272, 432, 433]);
    expect(tok.encode('')).toEqual([2]);
    expect(tok.encode('', {addBos: false})).toEqual([]);
  });

  test('decode shows special tokens as their pieces, skipSpecial drops them', () => {
    const ids = [2, 4, 476, 358, 324, 5, 1, 0];
    expect(tok.decode(ids)).toBe('<s><start_of_turn>Hello<end_of_turn></s><pad>');
    expect(tok.decode(ids, {skipSpecial: true})).toBe('Hello');
    expect(tok.decode([428, 3, 428])).toBe('a<unk>a');
    expect(tok.decode([428, 3, 428], {skipSpecial: true})).toBe('aa');
  });

  test('byte fallback: incomplete or invalid UTF-8 becomes U+FFFD per byte, like sentencepiece', () => {
    const byte = (b: number): number => 6 + b; // <0x00> is id 6 in this layout
    expect(tok.idToPiece(byte(0xc3))).toBe('<0xC3>');
    expect(tok.decode([byte(0xc3), byte(0xa9)])).toBe('é');
    expect(tok.decode([byte(0xc3)])).toBe('\uFFFD');
    expect(tok.decode([byte(0xe6), byte(0x97), 428])).toBe('\uFFFD\uFFFDa');
    expect(tok.decode([byte(0xa9), byte(0xc3), byte(0xa9)])).toBe('\uFFFDé');
    // a special token ends a byte run even when it is skipped
    expect(tok.decode([byte(0xc3), 1, byte(0xa9)], {skipSpecial: true})).toBe('\uFFFD\uFFFD');
  });

  test('decode agrees with sentencepiece-js on random non-control id sequences', async () => {
    const {SentencePieceProcessor} = require('sentencepiece-js');
    const sp = new SentencePieceProcessor();
    await sp.load(MODEL);
    const rnd = seededUniform(7);
    const pick = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo));
    for (let t = 0; t < 2000; t++) {
      const ids: number[] = [];
      const n = pick(1, 9);
      for (let k = 0; k < n; k++) {
        const r = rnd();
        // mostly byte pieces (ids 6..261), where the UTF-8 assembly is subtle; some turn markers and normal pieces
        ids.push(r < 0.6 ? pick(6, 262) : r < 0.65 ? pick(4, 6) : pick(262, 512));
      }
      const expected: string = sp.decodeIds(ids);
      expect(tok.decode(ids)).toBe(expected);
      expect(streamAll(ids)).toBe(expected);
    }
  });

  test('idToPiece / pieceToId', () => {
    expect(tok.idToPiece(4)).toBe('<start_of_turn>');
    expect(tok.idToPiece(262)).toBe('▁▁');
    expect(tok.pieceToId('<end_of_turn>')).toBe(5);
    expect(tok.pieceToId('no such piece')).toBe(tok.unkId);
    expect(() => tok.idToPiece(512)).toThrow('token id 512 out of range [0, 512)');
    expect(() => tok.decode([-1])).toThrow('token id -1 out of range');
  });

  test('missing model file gives a one-line error', async () => {
    const missing = path.join(__dirname, 'fixtures/tokenizer/nope.model');
    await expect(GemmaTokenizer.load(missing)).rejects.toThrow(new Error(`tokenizer not found: ${missing}`));
  });

  test('a file that is not a sentencepiece model is rejected at load', async () => {
    // (A .json file is read as a tokenizer.json: test/tokenizer/hf_json.test.ts.)
    const notModel = path.join(__dirname, 'fixtures/tokenizer/golden.json');
    const copy = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-notmodel-')), 'golden.model');
    fs.copyFileSync(notModel, copy);
    await expect(GemmaTokenizer.load(copy)).rejects.toThrow(/not a sentencepiece model/);
    fs.rmSync(path.dirname(copy), {recursive: true});
  });

  test('loading leaves no process-wide error handlers behind', async () => {
    const before = process.listeners('uncaughtException').length + process.listeners('unhandledRejection').length;
    await GemmaTokenizer.load(MODEL);
    const after = process.listeners('uncaughtException').length + process.listeners('unhandledRejection').length;
    expect(after).toBe(before);
  });
});

describe('stream decoder', () => {
  test.each(golden.cases.map((c) => [JSON.stringify(c.text), c] as const))(
    'pushes concatenate to decode() for %s',
    (_n, c) => {
      expect(streamAll(c.ids)).toBe(tok.decode(c.ids));
      expect(streamAll(c.ids, true)).toBe(tok.decode(c.ids, {skipSpecial: true}));
    },
  );

  test('holds back a partial multi-byte character and emits it once complete', () => {
    const d = tok.createStreamDecoder();
    // "日" = E6 97 A5 as three byte pieces, then "a"
    expect(d.push(236)).toBe('');
    expect(d.push(157)).toBe('');
    expect(d.push(171)).toBe('日');
    expect(d.push(428)).toBe('a');
    expect(d.flush()).toBe('');
  });

  test("'▁' pieces become spaces in place, so words stay separated", () => {
    const d = tok.createStreamDecoder();
    const out = [476, 358, 324, 338, 272, 432, 433].map((id) => d.push(id));
    expect(out).toEqual(['H', 'el', 'lo', ' w', 'or', 'l', 'd']);
  });

  test('flush renders a dangling partial character', () => {
    const d = tok.createStreamDecoder();
    expect(d.push(246)).toBe(''); // F0: first byte of a 4-byte character
    expect(d.push(165)).toBe('');
    expect(d.flush()).toBe('\uFFFD\uFFFD');
  });
});

describe('chat template', () => {
  const conversation: ChatMessage[] = [
    {role: 'system', content: 'You are terse.'},
    {role: 'user', content: 'What is 2+2?'},
    {role: 'model', content: '4'},
    {role: 'user', content: 'And 3+3?'},
  ];

  test('renders a multi-turn conversation, system folded into the first user turn', () => {
    expect(renderChat(conversation)).toBe(
      '<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n' +
        '<start_of_turn>model\n4<end_of_turn>\n' +
        '<start_of_turn>user\nAnd 3+3?<end_of_turn>\n',
    );
    expect(renderChat(conversation, {addGenerationPrompt: true})).toBe(
      '<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n' +
        '<start_of_turn>model\n4<end_of_turn>\n' +
        '<start_of_turn>user\nAnd 3+3?<end_of_turn>\n' +
        '<start_of_turn>model\n',
    );
  });

  test('matches the golden chat string and its ids', () => {
    const c = golden.cases.find((g) => g.text.startsWith('<start_of_turn>'));
    expect(c).toBeDefined();
    const msgs: ChatMessage[] = [{role: 'user', content: 'What is 2+2?'}];
    expect(renderChat(msgs, {addGenerationPrompt: true})).toBe(c!.text);
    expect(encodeChat(tok, msgs, {addGenerationPrompt: true})).toEqual([2, ...c!.ids]);
  });

  test('encodeChat: BOS, then ids 4 and 5 exactly where the turn markers are', () => {
    const ids = encodeChat(tok, conversation, {addGenerationPrompt: true});
    expect(ids[0]).toBe(2);
    expect(ids.filter((id) => id === 2)).toHaveLength(1);
    const starts = ids.flatMap((id, i) => (id === 4 ? [i] : []));
    const ends = ids.flatMap((id, i) => (id === 5 ? [i] : []));
    expect(starts).toHaveLength(4);
    expect(ends).toHaveLength(3);
    // each marker is followed by exactly the text the template puts there
    const header = (role: string): number[] => tok.encode(`${role}\n`, {addBos: false});
    const following = (i: number, n: number): number[] => ids.slice(i + 1, i + 1 + n);
    expect(following(starts[0], header('user').length)).toEqual(header('user'));
    expect(following(starts[1], header('model').length)).toEqual(header('model'));
    expect(following(starts[2], header('user').length)).toEqual(header('user'));
    expect(ends.map((i) => tok.decode([ids[i + 1]]))).toEqual(['\n', '\n', '\n']);
    expect(tok.decode(ids.slice(starts[3] + 1))).toBe('model\n');
    // segment-wise encoding tokenizes exactly like the rendered string here
    expect(ids).toEqual(tok.encode(renderChat(conversation, {addGenerationPrompt: true})));
    expect(tok.decode(ids, {skipSpecial: true})).toBe(
      'user\nYou are terse.\n\nWhat is 2+2?\nmodel\n4\nuser\nAnd 3+3?\nmodel\n',
    );
  });

  test('encodeChat inserts the marker ids itself instead of tokenizing "<start_of_turn>" text', () => {
    const spy = jest.spyOn(tok, 'encode');
    try {
      const ids = encodeChat(tok, conversation, {addGenerationPrompt: true});
      expect(ids.filter((id) => id === 4 || id === 5)).toHaveLength(7);
      const texts = spy.mock.calls.map((call) => call[0]);
      expect(texts.length).toBeGreaterThan(0);
      for (const t of texts) expect(t).not.toMatch(/<start_of_turn>|<end_of_turn>/);
    } finally {
      spy.mockRestore();
    }
  });

  test('encodeChatForTraining marks model replies and their <end_of_turn> only', () => {
    const msgs: ChatMessage[] = [
      {role: 'user', content: 'Hi'},
      {role: 'model', content: 'Hello world'},
      {role: 'user', content: 'Bye'},
      {role: 'model', content: 'ok'},
    ];
    const {ids, trainMask} = encodeChatForTraining(tok, msgs);
    expect(ids).toEqual(encodeChat(tok, msgs));
    expect(trainMask).toHaveLength(ids.length);
    const trained = ids.filter((_, i) => trainMask[i]);
    const enc = (s: string): number[] => tok.encode(s, {addBos: false});
    expect(trained).toEqual([...enc('Hello world'), 5, ...enc('ok'), 5]);
    // and they are the right occurrences: each trained run ends on the model turn's own <end_of_turn>
    const runs: number[][] = [];
    trainMask.forEach((m, i) => {
      if (m && (i === 0 || !trainMask[i - 1])) runs.push([]);
      if (m) runs[runs.length - 1].push(i);
    });
    expect(runs).toHaveLength(2);
    const header = [4, ...enc('model\n')];
    for (const r of runs) {
      expect(ids[r[r.length - 1]]).toBe(5);
      expect(ids.slice(r[0] - header.length, r[0])).toEqual(header);
    }
  });

  test('invalid conversations give one-line errors', () => {
    expect(() => renderChat([{role: 'model', content: 'x'}])).toThrow(
      "chat: roles must alternate user/model starting with user; message 0 is 'model'",
    );
    expect(() =>
      renderChat([
        {role: 'user', content: 'a'},
        {role: 'user', content: 'b'},
      ]),
    ).toThrow("chat: roles must alternate user/model starting with user; message 1 is 'user'");
    expect(() =>
      renderChat([
        {role: 'user', content: 'a'},
        {role: 'system', content: 's'},
      ]),
    ).toThrow('chat: a system message is only allowed first (message 1)');
    expect(() => renderChat([{role: 'system', content: 's'}])).toThrow(
      'chat: a system message must be followed by a user message',
    );
  });
});
