/**
 * The fast tokenizer.json path (src/tokenizer/bpe_merge.ts through hf_json.ts's word encoder) on
 * Gemma's real tokenizer.json gives exactly the ids of @huggingface/tokenizers encoding the whole
 * text: on a megabyte of English (the Brown corpus), on the Python goldens' texts, on random
 * unicode strings; and BpeMerger alone on made-up models whose merge order is worked by hand.
 */

import {Tokenizer} from '@huggingface/tokenizers';
import * as fs from 'fs';
import * as path from 'path';
import {loadBrownText} from '../../src/data/corpus';
import {BpeMerger} from '../../src/tokenizer/bpe_merge';
import {hfTokenizer} from '../../src/tokenizer/hf_json';
import {GEMMA_DIR} from '../helpers';

jest.setTimeout(300_000);

const json = JSON.parse(fs.readFileSync(path.join(GEMMA_DIR, 'tokenizer.json'), 'utf8'));
const golden = JSON.parse(
  fs.readFileSync(path.join(__dirname, '../fixtures/hf-goldens/golden_tokenizer.json'), 'utf8'),
);
let ours: (t: string) => number[];
let lib: (t: string) => number[];
beforeAll(() => {
  ours = hfTokenizer(json, {}).codec.encodeIds;
  const t = new Tokenizer(json, {});
  lib = (s) => t.encode(s, {add_special_tokens: false}).ids;
});

test('a megabyte of English: the same ids as the library on the whole text', () => {
  const docs = loadBrownText();
  let text = '';
  for (let i = 0; text.length < 1_000_000; i++) text += `${docs[i % docs.length]}\n\n`;
  text = text.slice(0, 1_000_000);
  const a = ours(text);
  const b = lib(text);
  expect(a.length).toBe(b.length);
  expect(a.length).toBeGreaterThan(200_000);
  let firstDiff = -1;
  for (let i = 0; i < a.length && firstDiff < 0; i++) if (a[i] !== b[i]) firstDiff = i;
  expect(firstDiff).toBe(-1);
});

test("the goldens' texts: Python's ids, and the library's", () => {
  for (const r of golden.texts as {text: string; ids_no_bos: number[]}[]) {
    expect(ours(r.text)).toEqual(r.ids_no_bos);
    expect(ours(r.text)).toEqual(lib(r.text));
  }
});

/** A deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('random unicode strings, spaces, markers and ▁ runs: the same ids as the library', () => {
  const r = rng(15);
  const parts = [
    ' ',
    '  ',
    '▁',
    '▁▁▁',
    '\t',
    '\n',
    '<start_of_turn>',
    '<eos>',
    '<unused3>',
    'the',
    'ing',
    '12',
    '\u200d',
  ];
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0xa0, 0x24f],
    [0x370, 0x4ff],
    [0x3040, 0x30ff],
    [0x4e00, 0x9fff],
    [0xac00, 0xd7a3],
    [0x1f300, 0x1faff],
    [0x13000, 0x1342f],
    [0x0, 0x1f],
    [0xd800, 0xdfff], // lone surrogates
    [0xe000, 0xf8ff],
    [0x10000, 0x10ffff],
  ];
  for (let n = 0; n < 400; n++) {
    let s = '';
    const len = 1 + Math.floor(r() * 40);
    for (let i = 0; i < len; i++) {
      if (r() < 0.25) s += parts[Math.floor(r() * parts.length)];
      else {
        const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
        s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
      }
    }
    expect([s, ours(s)]).toEqual([s, lib(s)]);
  }
});

describe('BpeMerger on hand-made models', () => {
  const bytes = Object.fromEntries(
    Array.from({length: 256}, (_, b) => [`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 10 + b]),
  );
  const enc = (m: BpeMerger | null, w: string) => {
    const out: number[] = [];
    m?.encodeWord(w, out);
    return out;
  };
  test('the lowest rank first, the leftmost on a tie; unknown pieces become bytes', () => {
    const vocab = {'<unk>': 0, a: 1, b: 2, aa: 3, ab: 4, aab: 5, ...bytes};
    // merges: a+a (rank 0), a+b (rank 1), aa+b (rank 2)
    const m = BpeMerger.build(
      {type: 'BPE', vocab, merges: ['a a', 'a b', 'aa b'], byte_fallback: true, unk_token: '<unk>'},
      [],
    );
    // "aaa": a+a at 0 and 1 tie at rank 0: the left one merges: [aa, a].
    expect(enc(m, 'aaa')).toEqual([3, 1]);
    // "aab": a+a (rank 0) first, then aa+b (rank 2): [aab].
    expect(enc(m, 'aab')).toEqual([5]);
    // "abab": a+b twice (rank 1), no more merges: [ab, ab].
    expect(enc(m, 'abab')).toEqual([4, 4]);
    // "é" is not in the vocab: its UTF-8 bytes C3 A9.
    expect(enc(m, 'aé')).toEqual([1, 10 + 0xc3, 10 + 0xa9]);
  });
  test('a later duplicate merge line overrides; a merged piece outside the vocab falls back to bytes', () => {
    const vocab = {'<unk>': 0, x: 1, y: 2, z: 3, yz: 4, ...bytes};
    // x+y first listed at rank 0, again at rank 3: it takes rank 3, after y+z (rank 1).
    const m = BpeMerger.build(
      {
        type: 'BPE',
        vocab,
        merges: [
          ['x', 'y'],
          ['y', 'z'],
          ['q', 'q'],
          ['x', 'y'],
        ],
        byte_fallback: true,
        unk_token: '<unk>',
      },
      [],
    );
    expect(enc(m, 'xyz')).toEqual([1, 4]);
    // "xy" merges to 'xy', which is no piece: its bytes 78 79.
    expect(enc(m, 'xy')).toEqual([10 + 0x78, 10 + 0x79]);
  });
  test('what it does not reproduce gives null', () => {
    expect(BpeMerger.build({type: 'BPE', vocab: {a: 0}, merges: [], byte_fallback: false}, [])).toBeNull();
    expect(BpeMerger.build({type: 'BPE', vocab: bytes, merges: [], byte_fallback: true, dropout: 0.1}, [])).toBeNull();
  });
});
