/**
 * Next-token sampling as a chain of small logits processors, plus stop-string detection for streamed text.
 *   const sampler = new Sampler({ temperature: 0.8, topK: 40, topP: 0.95, seed: 1 });
 *   const next = sampler.next(data, inputIds[0]);   // data: one row of logits [V]; the row's ids so far
 *   const stop = new StopStringMatcher(['\n\n']);   const {emit, stopped} = stop.push('Hello');
 */
import {Rng} from '../util/rng';

export interface LogitsProcessor {
  /** May modify `logits` in place; returns the processed row. Filtered-out tokens get -Infinity. */
  apply(logits: Float32Array, previousIds: number[]): Float32Array;
}

/** CTRL-style penalty: divide positive logits and multiply negative ones, so a repeated token always loses. */
export class RepetitionPenaltyProcessor implements LogitsProcessor {
  constructor(readonly penalty: number) {
    validateSamplingOptions({repetitionPenalty: penalty});
  }

  apply(logits: Float32Array, previousIds: number[]): Float32Array {
    // Each distinct id once: penalizing per occurrence would compound the penalty with the repeat count.
    for (const id of new Set(previousIds)) {
      if (!Number.isInteger(id) || id < 0 || id >= logits.length) {
        throw new RangeError(`repetition penalty: previous id ${id} out of range [0, ${logits.length})`);
      }
      const l = logits[id];
      logits[id] = l > 0 ? l / this.penalty : l * this.penalty;
    }
    return logits;
  }
}

export class TemperatureProcessor implements LogitsProcessor {
  constructor(readonly temperature: number) {
    if (!(temperature > 0) || !Number.isFinite(temperature)) {
      throw new Error(`temperature processor needs a finite temperature > 0, got ${temperature}`);
    }
  }

  apply(logits: Float32Array): Float32Array {
    if (this.temperature !== 1) for (let i = 0; i < logits.length; i++) logits[i] /= this.temperature;
    return logits;
  }
}

/** Keeps the k largest logits; every token tied with the k-th largest is kept too, so the result never depends on sort order. */
export class TopKProcessor implements LogitsProcessor {
  constructor(readonly k: number) {
    validateSamplingOptions({topK: k});
  }

  apply(logits: Float32Array): Float32Array {
    if (this.k >= logits.length) return logits;
    const threshold = kthLargest(logits, this.k);
    for (let i = 0; i < logits.length; i++) if (logits[i] < threshold) logits[i] = -Infinity;
    return logits;
  }
}

/** k-th largest value (counting repeats) via a size-k min-heap: O(V log k) and no full sort of a 256k vocabulary. */
function kthLargest(values: Float32Array, k: number): number {
  const heap = new Float64Array(k);
  let n = 0;
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
      let m = i;
      if (l < n && heap[l] < heap[m]) m = l;
      if (r < n && heap[r] < heap[m]) m = r;
      if (m === i) return;
      const t = heap[i];
      heap[i] = heap[m];
      heap[m] = t;
      i = m;
    }
  };
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) continue;
    if (n < k) {
      let j = n++;
      heap[j] = v;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (heap[parent] <= heap[j]) break;
        const t = heap[parent];
        heap[parent] = heap[j];
        heap[j] = t;
        j = parent;
      }
    } else if (v > heap[0]) {
      heap[0] = v;
      siftDown(0);
    }
  }
  return n < k ? -Infinity : heap[0];
}

/**
 * Nucleus filtering: keeps the smallest set of most probable tokens whose total probability reaches p
 * (among equal probabilities the lower id goes first, matching greedy's first-max rule); always keeps one.
 */
export class TopPProcessor implements LogitsProcessor {
  constructor(readonly p: number) {
    validateSamplingOptions({topP: p});
  }

  apply(logits: Float32Array): Float32Array {
    const probs = softmax(logits);
    // Find the cutoff probability by sorting only candidates: tokens above a floor that is lowered until
    // their total reaches p (the nucleus lies inside that set), usually a few dozen of a 256k vocabulary.
    // Values go through a native numeric sort; a comparator sort of indices costs ~0.2 s per token.
    let max = 0,
      nonzero = 0;
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] > max) max = probs[i];
      if (probs[i] > 0) nonzero++;
    }
    let floor = max,
      n = 0;
    for (;;) {
      floor /= 16;
      let sum = 0;
      n = 0;
      for (let i = 0; i < probs.length; i++)
        if (probs[i] >= floor && probs[i] > 0) {
          sum += probs[i];
          n++;
        }
      if (sum >= this.p || n === nonzero) break;
    }
    const sorted = new Float64Array(n);
    for (let i = 0, j = 0; i < probs.length; i++) if (probs[i] >= floor && probs[i] > 0) sorted[j++] = probs[i];
    sorted.sort(); // ascending
    let cum = 0,
      last = 0; // `last` = index in `sorted` of the least probable kept token
    for (let i = n - 1; i >= 0; i--) {
      cum += sorted[i];
      last = i;
      if (cum >= this.p) break;
    }
    // If the cutoff probability is shared by several tokens, only as many as the sum needed are kept: lowest ids first.
    const cutoff = sorted[last];
    let equalKept = 0;
    for (let i = last; i < n && sorted[i] === cutoff; i++) equalKept++;
    for (let i = 0; i < logits.length; i++) {
      if (probs[i] > cutoff) continue;
      if (probs[i] === cutoff && equalKept > 0) {
        equalKept--;
        continue;
      }
      logits[i] = -Infinity;
    }
    return logits;
  }
}

/**
 * Min-p: keeps the tokens whose probability is at least minP times the most probable one's (on the
 * row as filtered so far; the ratio does not depend on renormalising). The most probable always stays.
 */
export class MinPProcessor implements LogitsProcessor {
  constructor(readonly minP: number) {
    validateSamplingOptions({minP});
  }

  apply(logits: Float32Array): Float32Array {
    const probs = softmax(logits);
    let max = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i] > max) max = probs[i];
    const floor = this.minP * max;
    for (let i = 0; i < logits.length; i++) if (!(probs[i] >= floor)) logits[i] = -Infinity;
    return logits;
  }
}

export interface SamplingOptions {
  /** 0 or undefined: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** In [0, 1]; 0 or undefined: off. Applied after top-p. */
  minP?: number;
  /** 1 or undefined: off. */
  repetitionPenalty?: number;
  /** Seed of the draw PRNG; random when undefined (read it back from Sampler.seed to reproduce a run). */
  seed?: number;
}

export function validateSamplingOptions(opts: SamplingOptions): void {
  const {temperature: t, topK: k, topP: p, minP: m, repetitionPenalty: r, seed} = opts;
  // Written as !(x ok) so that NaN fails too.
  if (t !== undefined && !(t >= 0 && Number.isFinite(t))) throw new Error(`temperature must be >= 0, got ${t}`);
  if (k !== undefined && !(Number.isInteger(k) && k >= 1)) throw new Error(`topK must be an integer >= 1, got ${k}`);
  if (p !== undefined && !(p > 0 && p <= 1)) throw new Error(`topP must be in (0, 1], got ${p}`);
  if (m !== undefined && !(m >= 0 && m <= 1)) throw new Error(`minP must be in [0, 1], got ${m}`);
  if (r !== undefined && !(r > 0 && Number.isFinite(r))) throw new Error(`repetitionPenalty must be > 0, got ${r}`);
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
}

/**
 * Softmax in float64 (a float32 running sum over a 256k vocabulary loses the tail), into `out`
 * when given (a buffer reused from token to token: allocating 2 MB per token costs more than the
 * arithmetic).
 */
function softmax(logits: Float32Array, out: Float64Array = new Float64Array(logits.length)): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (!Number.isFinite(max)) throw new Error(`sampling: logits have no finite maximum (${max})`);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** First index of the maximum (NaNs never win). */
function argmax(logits: Float32Array): number {
  let best = -1;
  for (let i = 0; i < logits.length; i++) {
    if (best < 0 ? !Number.isNaN(logits[i]) : logits[i] > logits[best]) best = i;
  }
  if (best < 0) throw new Error('sampling: logits are empty or all NaN');
  return best;
}

export class Sampler {
  readonly seed: number;
  readonly greedy: boolean;
  /** The processors applied before a draw, in order. */
  readonly processors: LogitsProcessor[] = [];
  private readonly penalty?: RepetitionPenaltyProcessor;
  private readonly rand: () => number;
  /** Scratch rows reused across tokens (the processors write into the first). */
  private rowBuf: Float32Array | null = null;
  private probBuf: Float64Array | null = null;

  constructor(opts: SamplingOptions = {}) {
    validateSamplingOptions(opts);
    this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    const rng = new Rng(this.seed);
    this.rand = () => rng.next();
    this.greedy = !opts.temperature;
    if (opts.repetitionPenalty !== undefined && opts.repetitionPenalty !== 1) {
      this.penalty = new RepetitionPenaltyProcessor(opts.repetitionPenalty);
      this.processors.push(this.penalty);
    }
    if (!this.greedy) {
      this.processors.push(new TemperatureProcessor(opts.temperature as number));
      if (opts.topK !== undefined) this.processors.push(new TopKProcessor(opts.topK));
      if (opts.topP !== undefined && opts.topP < 1) this.processors.push(new TopPProcessor(opts.topP));
      if (opts.minP) this.processors.push(new MinPProcessor(opts.minP));
    }
  }

  /**
   * Whether next() is the first index of the maximum whatever the previous ids (greedy without a
   * repetition penalty): generation may then find it where the logits are (ops/row_argmax).
   */
  get picksArgmax(): boolean {
    return this.greedy && this.penalty == null;
  }

  /** Picks the next token id from one row of logits; the caller's array is left untouched. */
  next(logits: Float32Array, previousIds: number[]): number {
    if (this.greedy && this.penalty == null) return argmax(logits); // reads only
    if (this.rowBuf?.length !== logits.length) this.rowBuf = new Float32Array(logits.length);
    let row: Float32Array = this.rowBuf;
    row.set(logits);
    if (this.greedy) {
      // Temperature, top-k and top-p cannot move the argmax, but the repetition penalty can, so it still applies.
      return argmax(this.penalty!.apply(row, previousIds));
    }
    for (const p of this.processors) row = p.apply(row, previousIds);
    if (this.probBuf?.length !== row.length) this.probBuf = new Float64Array(row.length);
    const probs = softmax(row, this.probBuf);
    const u = this.rand();
    let cum = 0,
      last = -1;
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] === 0) continue;
      cum += probs[i];
      last = i;
      if (u < cum) return i;
    }
    return last; // rounding left the total a hair below u: the last possible token is the right answer
  }
}

/**
 * Stop-string detection over streamed text. Text that could be the start of a stop string is held back
 * until it is decided; when a stop string completes, the text before it is emitted and the stop itself is not.
 * The result does not depend on how the text was split into pushes: the stop that completes first wins.
 */
export class StopStringMatcher {
  private held = '';
  private done = false;
  private readonly stops: string[];

  constructor(stops: string[]) {
    for (const s of stops) if (s.length === 0) throw new Error('stop strings must not be empty');
    this.stops = [...stops];
  }

  get stopped(): boolean {
    return this.done;
  }

  push(text: string): {emit: string; stopped: boolean} {
    if (this.done) return {emit: '', stopped: true};
    const buf = this.held + text;
    // Earliest end wins (what char-by-char streaming would see first); at the same end, the longer stop.
    let bestStart = -1,
      bestEnd = Infinity;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (i + s.length < bestEnd || (i + s.length === bestEnd && i < bestStart))) {
        bestStart = i;
        bestEnd = i + s.length;
      }
    }
    if (bestStart >= 0) {
      this.done = true;
      this.held = '';
      return {emit: buf.slice(0, bestStart), stopped: true};
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > hold; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.held = buf.slice(buf.length - hold);
    return {emit: buf.slice(0, buf.length - hold), stopped: false};
  }

  /** End of stream without a stop: releases the held-back text. */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    return out;
  }
}
