/**
 * Calibration text for fitting int4 weights (ops/compact/gptq.ts): 'default' is the Brown
 * corpus's TRAINING split (src/data/corpus.ts; never its held-out split, which the quality
 * figures are measured on), or a UTF-8 text file (documents separated by blank lines). Tokenized
 * with the model's own tokenizer, each document opening with BOS and closing with EOS, cut into
 * rows of 256 tokens, at most `maxTokens` tokens in all (whole rows).
 *   const rows = calibrationRows('default', tok, {maxTokens: 32768});   // 128 rows of {ids, pos}
 *
 * Positions restart at each BOS, so no row reaches across documents.
 */
import * as fs from 'fs';
import type {CalibrationRow} from '../core/calibrate';
import type {GemmaTokenizer} from '../tokenizer';
import {brownSplit} from './corpus';

export const CALIBRATION_SEQ_LEN = 256;
/** Bounds of maxTokens: one row, and 4M tokens (16,384 rows). */
export const CALIBRATION_TOKENS = {min: CALIBRATION_SEQ_LEN, max: 4 * 1024 * 1024, default: 32768} as const;

/** The documents of a calibration source, or a one-line error. */
function documents(source: string): string[] {
  if (source === 'default') return brownSplit().train;
  if (!fs.existsSync(source) || !fs.statSync(source).isFile())
    throw new Error(`calibration: ${source} is not a file (give a UTF-8 text file or 'default')`);
  return fs
    .readFileSync(source, 'utf8')
    .split(/\n\s*\n/)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

/** Rows of calibration tokens from `source` ('default' or a text file), tokenized by `tok`. */
export function calibrationRows(
  source: string,
  tok: GemmaTokenizer,
  opts: {maxTokens?: number} = {},
): CalibrationRow[] {
  const maxTokens = opts.maxTokens ?? CALIBRATION_TOKENS.default;
  if (!Number.isInteger(maxTokens) || maxTokens < CALIBRATION_TOKENS.min || maxTokens > CALIBRATION_TOKENS.max) {
    throw new Error(
      `calibration tokens must be an integer in [${CALIBRATION_TOKENS.min}, ${CALIBRATION_TOKENS.max}], got ${maxTokens}`,
    );
  }
  const ids: number[] = [];
  for (const d of documents(source)) {
    if (ids.length >= maxTokens) break;
    ids.push(...tok.encode(d, {addBos: true}), tok.eosId);
  }
  const n = Math.min(Math.floor(ids.length / CALIBRATION_SEQ_LEN), Math.floor(maxTokens / CALIBRATION_SEQ_LEN));
  if (n === 0)
    throw new Error(`calibration: ${source} holds ${ids.length} tokens, fewer than one row of ${CALIBRATION_SEQ_LEN}`);
  const rows: CalibrationRow[] = [];
  for (let r = 0; r < n; r++) {
    const row = ids.slice(r * CALIBRATION_SEQ_LEN, (r + 1) * CALIBRATION_SEQ_LEN);
    const pos: number[] = [];
    let p = 0;
    for (const t of row) {
      if (t === tok.bosId) p = 0;
      pos.push(p++);
    }
    rows.push({ids: row, pos});
  }
  return rows;
}
