/**
 * Continuous batching over the constant-size decoding state: a fixed number of slots, each one row
 * of a running GenerationState. A request is prefilled alone and joins the batch at the next step
 * boundary; a finished or cancelled sequence leaves it at the step it ends; a full batch queues the
 * rest, and a full queue refuses (ApiError 429 with Retry-After).
 *   const sched = new Scheduler(model, tok, {maxBatch: 4, maxQueue: 16});
 *   await sched.submit({promptIds: [2, 651], n: 1, maxTokens: 8, temperature: 0, seed: 1, stop: [], logprobs: null, onEvent: (ev) => console.log(ev.text)});
 *
 * Each sequence has its own sampling stream (choice i of a request draws from seed + i, as row i
 * of model.generate does) and its own stop-string matcher, so a request's tokens do not depend on
 * what else runs beside it: they are those of the same request run alone. Log-probabilities are
 * the model's (log-softmax of the raw logits, before temperature or top-p).
 *
 * Two ways to hold the batch. On webgpu with the fused decode engine (slots.ts): each sequence
 * keeps one row of an engine of a few fixed sizes from join to leave, tokens are drawn on the GPU
 * by model.generate's rules and stream (Philox keyed by (seed, step)), the step that feeds them
 * is queued before they come back (one step ahead), and only the ids come back, plus the logits
 * rows of sequences that asked for logprobs. Elsewhere (cpu, wasm, tfjs ops): the
 * rows of one GenerationState, concatenated on join and selected on leave, sampled on the host
 * (greedy batches by the row argmax where the backend has one).
 *
 * Shape letters: b running rows, V vocab_size.
 */
import {rowArgmax, rowArgmaxAvailable} from '../../ops/row_argmax';
import type {CausalLMCore} from '../core/model';
import {tunedAsOneRow} from '../engines/webgpu_decode';
import {holdUnsplitMatmuls} from '../engines/webgpu_prefill/shaders/matmul';
import {defaultPrefillChunk} from '../generation/prefill_chunk';
import {Sampler, StopStringMatcher} from '../generation/sampling';
import {decodeStep, GenerationState, prefill} from '../generation/state';
import type {GemmaTokenizer, StreamDecoder} from '../tokenizer';
import {ApiError} from './api_error';
import {SlotBatch, type SlotSampling, slotsApply} from './slots';

export type FinishReason = 'stop' | 'length';

export interface TokenLogprob {
  logprob: number;
  /** The most likely tokens at this step, most likely first (as many as the request asked). */
  top: {id: number; logprob: number}[];
}

export interface SequenceEvent {
  /** Which of the request's n choices. */
  choice: number;
  tokenId: number;
  /** The text this token made printable (held back while it may still become a stop string). */
  text: string;
  logprob?: TokenLogprob;
  /** On a choice's last token. */
  finishReason?: FinishReason;
}

/** What a job asks for (a request's sampling fields, src/serve/requests.ts CompletionSpec). */
export interface JobSpec {
  promptIds: number[];
  /** Choices, decoded side by side. */
  n: number;
  maxTokens: number;
  temperature: number;
  topP?: number;
  topK?: number;
  /** Choice i draws from seed + i (as row i of model.generate does). */
  seed: number;
  stop: string[];
  /** null: no logprobs; k >= 0: the chosen token's log-probability and the k most likely alternatives. */
  logprobs: number | null;
}

export interface Job extends JobSpec {
  /** Aborting drops the job's sequences at the next step (or from the queue). */
  signal?: AbortSignal;
  onEvent: (ev: SequenceEvent) => void;
}

export interface SchedulerOptions {
  /** Slots: rows decoded together at most. */
  maxBatch: number;
  /** Requests waiting for slots at most; past it, submit refuses with 429. */
  maxQueue: number;
  /** Ids that end a sequence (default: the config's eos and the tokenizer's <end_of_turn>). */
  eosIds?: number[];
  /** Hold the batch in engine slots where they apply (default true; false: GenerationState rows always). */
  slots?: boolean;
}

export interface SchedulerStats {
  slots: number;
  busy: number;
  queued: number;
  /** Decode steps run so far. */
  steps: number;
  /** Tokens handed out so far. */
  tokens: number;
  /** Rows of the decode engine holding the slots now (engine slots only; 0 before the first join). */
  engineRows?: number;
  /** Engine slots: engine rows computed with no sequence, summed over the steps. */
  deadRows?: number;
  /** Engine slots: engines built (the first, then each grow or shrink). */
  engines?: number;
}

export const MAX_BATCH_LIMIT = 256;
/** Engine slots: most prompt tokens prefilled in one batch (rows of one length). */
export const PREFILL_BATCH_TOKENS = 4096;
export const MAX_QUEUE_LIMIT = 100_000;

interface Pending {
  job: Job;
  resolve: () => void;
  reject: (e: unknown) => void;
  /** Choices still running. */
  left: number;
}

/** One choice of one request: one row of the running state. */
interface Sequence {
  pending: Pending;
  choice: number;
  sampler: Sampler;
  seen: number[];
  generated: number;
  decoder: StreamDecoder;
  matcher: StopStringMatcher | null;
  /** The engine slot it holds (engine slots only; -1 otherwise). */
  slot: number;
}

/** Lets I/O (new requests, disconnects) run between steps. */
const breathe = () => new Promise<void>((r) => setImmediate(r));

/** Log-softmax of one row: the chosen id's value and the k largest, most likely first (ties: lower id first). */
function logprobsOf(row: Float32Array, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  const top: {id: number; logprob: number}[] = [];
  if (k > 0) {
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      if (top.length === k && !(v > top[k - 1].logprob)) continue;
      let j = top.length < k ? top.length : k - 1;
      while (j > 0 && v > top[j - 1].logprob) j--;
      top.splice(j, 0, {id: i, logprob: v});
      if (top.length > k) top.pop();
    }
  }
  return {logprob: row[id] - lse, top: top.map((t) => ({id: t.id, logprob: t.logprob - lse}))};
}

export class Scheduler {
  private readonly queue: Pending[] = [];
  /** Row k of `work` is rows[k]. */
  private rows: Sequence[] = [];
  private work: GenerationState | null = null;
  private running: Promise<void> | null = null;
  /** Engine slots (webgpu), or null: the batch is `work`'s rows. */
  private readonly slots: SlotBatch | null;
  private closed = false;
  private readonly eos: Set<number>;
  private steps = 0;
  private tokens = 0;
  /** Engine slots: releases the hold that keeps the prefill matmuls unsplit (see the constructor). */
  private readonly releaseUnsplit: (() => void) | null;

  constructor(
    readonly model: CausalLMCore,
    readonly tok: GemmaTokenizer,
    readonly opts: SchedulerOptions,
  ) {
    const {maxBatch, maxQueue} = opts;
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_BATCH_LIMIT)
      throw new Error(`maxBatch must be an integer in [1, ${MAX_BATCH_LIMIT}], got ${maxBatch}`);
    if (!Number.isInteger(maxQueue) || maxQueue < 0 || maxQueue > MAX_QUEUE_LIMIT)
      throw new Error(`maxQueue must be an integer in [0, ${MAX_QUEUE_LIMIT}], got ${maxQueue}`);
    this.eos = new Set(
      opts.eosIds ?? [...model.config.eos_token_ids, ...(tok.endOfTurnId >= 0 ? [tok.endOfTurnId] : [])],
    );
    this.slots = opts.slots !== false && slotsApply(model, maxBatch) ? new SlotBatch(model, maxBatch) : null;
    // Prompts are prefilled in groups (admitSlots): split-K would sum a row's products in slices
    // chosen from the group's rows, so a row's bits would depend on its group; unsplit, they do not.
    this.releaseUnsplit = this.slots != null ? holdUnsplitMatmuls() : null;
  }

  /** Whether the batch lives in engine slots (webgpu) rather than in a GenerationState. */
  get usesSlots(): boolean {
    return this.slots != null;
  }

  get stats(): SchedulerStats {
    return {
      slots: this.opts.maxBatch,
      busy: this.rows.length,
      queued: this.queue.length,
      steps: this.steps,
      tokens: this.tokens,
      ...(this.slots != null
        ? {
            engineRows: this.slots.capacity,
            deadRows: this.slots.counters.deadRows,
            engines: this.slots.counters.engines,
          }
        : {}),
    };
  }

  /**
   * Runs a job; resolves when its choices have all finished (or it was cancelled), rejects when the
   * model fails. Throws ApiError 429 at once when the queue is full.
   */
  submit(job: Job): Promise<void> {
    if (this.closed) throw new ApiError(503, 'the server is shutting down');
    if (!Number.isInteger(job.n) || job.n < 1 || job.n > this.opts.maxBatch)
      throw new ApiError(400, `n must be an integer in [1, ${this.opts.maxBatch}]`, {param: 'n'});
    // Queued jobs that the free slots take at the next step do not wait; from the first that does
    // not fit on, they wait (admission is in order).
    let free = this.opts.maxBatch - this.rows.length,
      waiting = 0;
    for (const p of this.queue) {
      if (waiting === 0 && p.job.n <= free) free -= p.job.n;
      else waiting++;
    }
    if ((waiting > 0 || job.n > free) && waiting >= this.opts.maxQueue) {
      throw new ApiError(429, `the server is busy (${waiting} requests waiting); retry shortly`, {
        code: 'rate_limit_exceeded',
        headers: {'Retry-After': '1'},
      });
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({job, resolve, reject, left: job.n});
      this.running ??= this.loop().finally(() => {
        this.running = null;
      });
    });
  }

  /** Stops taking jobs, cancels the running and queued ones, and waits for the loop to end. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.resolve();
    for (const s of this.rows) s.pending.resolve();
    await this.running;
    this.work?.dispose();
    this.work = null;
    this.slots?.dispose();
    this.rows = [];
    this.releaseUnsplit?.();
  }

  private async loop(): Promise<void> {
    while (!this.closed && (this.rows.length > 0 || this.queue.length > 0)) {
      if (this.slots != null) this.dropCancelled(this.slots);
      if (this.slots != null) this.admitSlots(this.slots);
      else this.admit();
      if (this.rows.length > 0) {
        try {
          await (this.slots != null ? this.stepSlots(this.slots) : this.step());
        } catch (e) {
          this.fail(e);
        }
      }
      await breathe();
    }
  }

  /**
   * Takes the first queued job off the queue if its n rows fit beside `used` rows in maxBatch,
   * resolving (dropping) the aborted jobs before it; null when the queue is empty or it does not fit.
   */
  private takeFitting(used: number): Pending | null {
    while (this.queue.length > 0) {
      const p = this.queue[0];
      if (p.job.signal?.aborted) {
        this.queue.shift();
        p.resolve();
        continue;
      }
      if (used + p.job.n > this.opts.maxBatch) return null;
      return this.queue.shift() ?? null;
    }
    return null;
  }

  /** Prefills queued jobs (each alone, as it would run alone) into the free slots, in order. */
  private admit(): void {
    const joining: GenerationState[] = [];
    const seqs: Sequence[] = [];
    for (
      let p = this.takeFitting(this.rows.length + seqs.length);
      p != null;
      p = this.takeFitting(this.rows.length + seqs.length)
    ) {
      try {
        const st = prefill(this.model, [p.job.promptIds]);
        if (p.job.n > 1) {
          joining.push(st.select(Array(p.job.n).fill(0)));
          st.dispose();
        } else {
          joining.push(st);
        }
      } catch (e) {
        p.reject(e);
        continue;
      }
      for (let c = 0; c < p.job.n; c++) seqs.push(this.sequence(p, c));
    }
    if (joining.length === 0) return;
    const parts = this.work != null ? [this.work, ...joining] : joining;
    this.work = parts.length === 1 ? parts[0] : GenerationState.concat(parts);
    if (parts.length > 1) parts.forEach((s) => s.dispose());
    this.rows = [...this.rows, ...seqs];
  }

  /**
   * Engine slots: takes queued jobs that fit, in order, prefills them and places them in free
   * slots; the engine grows once to the rows all of them need. Prompts of one length are prefilled
   * together (up to PREFILL_BATCH_TOKENS, one row each, no padding) when the prefill runs them in one
   * chunk as it does a prompt alone: so many requests arriving together cost about one prefill's
   * time, not one each (the tests check that their tokens are those alone).
   */
  private admitSlots(slots: SlotBatch): void {
    const taken: Pending[] = [];
    let demand = this.rows.length;
    for (let p = this.takeFitting(demand); p != null; p = this.takeFitting(demand)) {
      taken.push(p);
      demand += p.job.n;
    }
    if (taken.length === 0) return;
    try {
      slots.reserve(demand);
    } catch (e) {
      for (const p of taken) p.reject(e); // the engine could not be made: these jobs fail, the running ones go on
      return;
    }
    const groups: Pending[][] = [];
    const open = new Map<number, Pending[]>();
    for (const p of taken) {
      const t = p.job.promptIds.length;
      let g = open.get(t);
      // At most the rows whose logits head sums a row as it does alone (tunedAsOneRow): the first
      // token is then the one the prompt gets alone.
      const fits = (rows: number) =>
        rows * t <= PREFILL_BATCH_TOKENS && t <= defaultPrefillChunk(this.model.config, rows) && tunedAsOneRow(rows);
      if (g == null || !fits(g.length + 1)) {
        g = [];
        groups.push(g);
        open.set(t, g);
      }
      g.push(p);
    }
    for (const g of groups) {
      let st: GenerationState;
      try {
        st = prefill(
          this.model,
          g.map((p) => p.job.promptIds),
        );
      } catch (e) {
        for (const p of g) p.reject(e);
        continue;
      }
      try {
        g.forEach((p, row) => {
          const got = slots.join(st, row, p.job.promptIds, p.job.n);
          got.forEach((slot, c) => {
            this.rows.push({...this.sequence(p, c), slot});
          });
        });
      } catch (e) {
        for (const p of g) if (!this.rows.some((s) => s.pending === p)) p.reject(e);
      } finally {
        st.dispose();
      }
    }
  }

  /**
   * Engine slots: one step, queued ahead (slots.ts): the tokens of this step are drawn on the GPU
   * and the step that feeds them is submitted before they come back, so the host judges them
   * (text, stop, events) while the GPU runs it. A sequence that ends here, or whose request was
   * cancelled, has been fed by that step as a dead row: it leaves now and emits nothing more.
   */
  private async stepSlots(slots: SlotBatch): Promise<void> {
    const sampling = new Map<number, SlotSampling>();
    for (const s of this.rows) {
      const j = s.pending.job;
      sampling.set(s.slot, {
        seed: j.seed + s.choice,
        step: s.generated,
        temperature: j.temperature,
        topK: j.topK,
        topP: j.topP,
      });
    }
    const got = await slots.step(
      sampling,
      this.rows.filter((s) => s.pending.job.logprobs != null).map((s) => s.slot),
    );
    const keep: Sequence[] = [],
      events: [Sequence, SequenceEvent][] = [];
    const failed = new Set<Pending>();
    for (const s of this.rows) {
      const job = s.pending.job;
      if (job.signal?.aborted || this.closed) continue; // leaves the batch now
      const id = got.ids.get(s.slot)!;
      if (id < 0) {
        failed.add(s.pending); // NaN logits: nothing to draw
        continue;
      }
      const ev = this.advanceSequence(s, id, got.logits.get(s.slot));
      events.push([s, ev]);
      if (ev.finishReason == null) keep.push(s);
    }
    this.steps++;
    this.tokens += events.length;
    const leaving = this.rows.filter((s) => !keep.includes(s));
    for (const s of leaving) slots.leave(s.slot);
    this.rows = keep.filter((s) => !failed.has(s.pending));
    for (const s of keep) if (failed.has(s.pending)) slots.leave(s.slot);
    this.deliver(
      events.filter(([s]) => !failed.has(s.pending)),
      leaving.filter((s) => !failed.has(s.pending)),
    );
    for (const p of failed) p.reject(new Error('sampling: logits are empty or all NaN'));
    slots.settle();
  }

  /** Engine slots: the sequences whose request was cancelled leave at this boundary, before the next step (no event). */
  private dropCancelled(slots: SlotBatch): void {
    const gone = this.rows.filter((s) => s.pending.job.signal?.aborted);
    if (gone.length === 0) return;
    for (const s of gone) slots.leave(s.slot);
    this.rows = this.rows.filter((s) => !gone.includes(s));
    this.deliver([], gone);
  }

  /** A sequence's new token: its text, stop checks and logprobs; the event it makes. */
  private advanceSequence(s: Sequence, id: number, row: Float32Array | undefined): SequenceEvent {
    const job = s.pending.job;
    s.seen.push(id);
    s.generated++;
    const piece = s.decoder.push(id);
    const r = s.matcher ? s.matcher.push(piece) : {emit: piece, stopped: false};
    let text = r.emit;
    let reason: FinishReason | undefined = this.eos.has(id) || r.stopped ? 'stop' : undefined;
    if (reason == null && s.generated >= job.maxTokens) reason = 'length';
    if (reason != null && !r.stopped) {
      const rest = s.decoder.flush();
      text += s.matcher ? s.matcher.push(rest).emit + s.matcher.flush() : rest;
    }
    const ev: SequenceEvent = {choice: s.choice, tokenId: id, text};
    if (job.logprobs != null) ev.logprob = logprobsOf(row!, id, job.logprobs);
    if (reason != null) ev.finishReason = reason;
    return ev;
  }

  /** Hands out a step's events, then resolves the jobs whose last choice left. */
  private deliver(events: [Sequence, SequenceEvent][], leaving: Sequence[]): void {
    for (const [s, ev] of events) {
      try {
        s.pending.job.onEvent(ev);
      } catch {
        /* a consumer's failure is its own: the others go on */
      }
    }
    for (const s of leaving) if (--s.pending.left === 0) s.pending.resolve();
  }

  private sequence(pending: Pending, choice: number): Sequence {
    const {job} = pending;
    return {
      slot: -1,
      pending,
      choice,
      sampler: new Sampler({temperature: job.temperature, topP: job.topP, topK: job.topK, seed: job.seed + choice}),
      seen: [...job.promptIds],
      generated: 0,
      decoder: this.tok.createStreamDecoder({skipSpecial: true}),
      matcher: job.stop.length > 0 ? new StopStringMatcher(job.stop) : null,
    };
  }

  /** One step: a token for every row from the state's logits, then the rows that go on advance by it. */
  private async step(): Promise<void> {
    const work = this.work!;
    const V = this.model.config.vocab_size;
    const hostLogits = this.rows.some((s) => !s.sampler.picksArgmax || s.pending.job.logprobs != null);
    let picks: Int32Array | null = null;
    if (!hostLogits && rowArgmaxAvailable()) {
      const t = rowArgmax(work.logits)!;
      try {
        picks = (await t.data()) as Int32Array;
      } finally {
        t.dispose();
      }
      if (!picks.every((id) => id >= 0)) picks = null; // a row of NaN: the host path says so
    }
    const logits = picks == null ? ((await work.logits.data()) as Float32Array) : null;
    const keep: number[] = [],
      tokens: number[] = [],
      events: [Sequence, SequenceEvent][] = [];
    this.rows.forEach((s, k) => {
      const job = s.pending.job;
      if (job.signal?.aborted || this.closed) return; // leaves the batch now
      const row = logits?.subarray(k * V, (k + 1) * V);
      const id = picks != null ? picks[k] : s.sampler.next(row!, s.seen);
      const ev = this.advanceSequence(s, id, row);
      events.push([s, ev]);
      if (ev.finishReason == null) {
        keep.push(k);
        tokens.push(id);
      }
    });
    this.steps++;
    this.tokens += events.length;
    const leaving = this.rows.filter((_, k) => !keep.includes(k));
    // The next step is submitted before the events go out, so that sending overlaps the model's work.
    if (keep.length === 0) {
      work.dispose();
      this.work = null;
    } else {
      if (keep.length < this.rows.length) {
        this.work = work.select(keep);
        work.dispose();
      }
      decodeStep(this.model, this.work!, tokens).logits.dispose();
    }
    this.rows = keep.map((k) => this.rows[k]);
    this.deliver(events, leaving);
  }

  /** The model failed mid-step: every running job fails with it, the queue goes on. */
  private fail(e: unknown): void {
    const jobs = new Set(this.rows.map((s) => s.pending));
    this.work?.dispose();
    this.work = null;
    for (const s of this.rows) if (s.slot >= 0) this.slots?.leave(s.slot);
    this.rows = [];
    for (const p of jobs) p.reject(e);
  }
}
