/**
 * Text generation on top of the incremental state: sampling, stop conditions, batches, streaming.
 *   const out = await model.generate([[2, 651, 6037]], {maxNewTokens: 20, temperature: 0.7, seed: 1});
 *   for await (const ev of model.stream(ids, {tokenizer})) process.stdout.write(ev.text ?? '');
 *
 * A batch may mix prompt lengths: left-pad and pass attentionMask; each row then gets what its prompt
 * gets alone. A row that stops leaves the batch (its state rows are dropped), the others go on.
 *
 * On webgpu the token is picked on the GPU and only the ids come back: greedy through ops/row_argmax,
 * anything else through the GPU sampler (gpu_sampling.ts: the same rules, its own Philox stream, so a
 * seed gives other tokens than on cpu or wasm, and the same ones on every webgpu run). EOS, stop ids
 * and stop strings are judged on the host from the ids. With the fused engine, the ids also feed
 * the next step on the GPU, submitted before they are read back (step_queue.ts): steps queue
 * ahead of the host, two picks with their steps in flight (GRIFFIN_QUEUE_DEPTH=1 or
 * queuedDecodeConfig.depth = 1: one; with a caller's state always one); the tokens are the same
 * either way. With the fused prefill engine, its
 * pipelines are compiled (in parallel) before the prompt runs, and the first token's pick goes
 * into the prefill's last submit, right after the head (prefillThen). GRIFFIN_TRACE=1 prints the
 * host phases of each call up to its first token (src/util/host_trace.ts); GRIFFIN_TRACE=run to
 * its last (each step's phases summed: wait.ids is the time the host waited on the GPU).
 */
import * as tf from '@tensorflow/tfjs';
import {rowArgmax, rowArgmaxAvailable} from '../../ops/row_argmax';
import type {CausalLMCore} from '../core/model';
import type {GemmaTokenizer, StreamDecoder} from '../tokenizer';
import {
  countGpuCalls,
  countTfReads,
  type HostTrace,
  hostTraceWholeRun,
  traceBegin,
  traceEnd,
  tracePhase,
} from '../util/host_trace';
import {checkIdRange, IdsLike, idRows} from '../util/ids';
import {GenerationGpuSampler} from './gpu_sampling';
import {Sampler, SamplingOptions, StopStringMatcher, validateSamplingOptions} from './sampling';
import {decodeStep, GenerationState, prefillReady, prefillThen} from './state';
import {type QueuedPick, queueDepth, StepQueue} from './step_queue';

export type FinishReason = 'eos' | 'stop_token' | 'stop_string' | 'length';

export interface TokenEvent {
  /** The batch row (of the input) this token belongs to. */
  row: number;
  tokenId: number;
  /**
   * With a tokenizer: the text this token made printable. Incomplete characters and anything that
   * may still become a stop string are held back until decided; special tokens print nothing.
   */
  text?: string;
  /** Set on a row's last token: why the row stopped. */
  finishReason?: FinishReason;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens per row at most (default 64). */
  maxNewTokens?: number;
  /** Ends a row (the token is kept). Default: the config's eos, plus <end_of_turn> when a tokenizer is given. */
  eosTokenId?: number | number[];
  /** More ids that end a row (kept in the output). */
  stopTokenIds?: number[];
  /** Texts that end a row; needs `tokenizer`. The text event stops before the match; the token that completed it is kept. */
  stopStrings?: string[];
  /** Turns tokens into TokenEvent.text; needed for stopStrings. */
  tokenizer?: GemmaTokenizer;
  /** [b, t]: 0 marks left padding. */
  attentionMask?: IdsLike | null;
  /** Called for every token, in order. */
  onToken?: (event: TokenEvent) => void;
  /** Stops generating (checked between steps); what was generated so far is returned, held-back text is dropped. */
  signal?: AbortSignal;
  /**
   * Continue from this state (a chat): the prompt is prefilled onto it, and when generation ends it
   * holds the prompt and every generated token of each row, ready for the next turn.
   */
  state?: GenerationState | null;
  /** Prompt chunk length of the prefill (default 512). */
  prefillChunkSize?: number;
}

const DEFAULT_MAX_NEW_TOKENS = 64;
/** Thrown (and caught) inside run when the signal aborts before the prefill. */
const ABORTED = Symbol('aborted');

/** Lets timers, I/O and abort signals run between steps, which a chain of resolved promises would starve. */
const breathe: () => Promise<void> =
  typeof setImmediate === 'function' ? () => new Promise<void>((r) => setImmediate(r)) : () => Promise.resolve();

interface RowTracker {
  prompt: number[];
  seen: number[]; // prompt + generated: what the repetition penalty looks at
  generated: number[];
  sampler: Sampler;
  decoder: StreamDecoder | null;
  matcher: StopStringMatcher | null;
}

function prepare(model: CausalLMCore, inputIds: IdsLike, opts: GenerateOptions) {
  const V = model.config.vocab_size;
  const rows = idRows(inputIds, 'inputIds', opts.state != null);
  const mask = opts.attentionMask != null ? idRows(opts.attentionMask, 'attentionMask', true) : null;
  const maxNew = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new Error(`maxNewTokens must be an integer >= 0, got ${maxNew}`);
  validateSamplingOptions(opts);
  const tok = opts.tokenizer ?? null;
  if (opts.stopStrings?.length && tok == null) throw new Error('stopStrings need a tokenizer (opts.tokenizer)');
  const eos =
    opts.eosTokenId != null
      ? [opts.eosTokenId].flat()
      : [...model.config.eos_token_ids, ...(tok != null && tok.endOfTurnId >= 0 ? [tok.endOfTurnId] : [])];
  checkIdRange(eos, V, 'eosTokenId');
  checkIdRange(opts.stopTokenIds ?? [], V, 'stopTokenIds');
  const trackers: RowTracker[] = rows.map((r, i) => {
    const prompt = mask ? r.filter((_, j) => mask[i]?.[j] !== 0) : [...r];
    return {
      prompt,
      seen: [...prompt],
      generated: [],
      // Row i draws from seed + i: a row of a batch samples what it samples alone (row 0 exactly).
      sampler: new Sampler({...opts, seed: opts.seed != null ? opts.seed + i : undefined}),
      decoder: tok?.createStreamDecoder({skipSpecial: true}) ?? null,
      matcher: opts.stopStrings?.length ? new StopStringMatcher(opts.stopStrings) : null,
    };
  });
  return {rows, mask, maxNew, eos: new Set(eos), stops: new Set(opts.stopTokenIds ?? []), trackers};
}

/** Tensor ids and mask read asynchronously: backends such as webgpu cannot read synchronously. */
async function onHost(inputIds: IdsLike, opts: GenerateOptions): Promise<[IdsLike, GenerateOptions]> {
  const read = async (v: IdsLike) => (v instanceof tf.Tensor && v.rank === 2 ? ((await v.array()) as number[][]) : v);
  const mask = opts.attentionMask != null ? await read(opts.attentionMask) : opts.attentionMask;
  return [await read(inputIds), {...opts, attentionMask: mask}];
}

/**
 * The token events of a generation, as they are produced. Breaking out of the iteration stops it
 * and frees everything (opts.state is still left consistent).
 */
export async function* streamTokens(
  model: CausalLMCore,
  inputIds: IdsLike,
  opts: GenerateOptions = {},
): AsyncGenerator<TokenEvent, void, undefined> {
  const trace = beginTrace('stream');
  [inputIds, opts] = await onHost(inputIds, opts);
  tracePhase('ids');
  yield* run(model, opts, prepare(model, inputIds, opts), trace);
}

/** A host trace of the call up to its first token (GRIFFIN_TRACE=1), counting GPU calls on webgpu. */
function beginTrace(label: string): HostTrace | null {
  const trace = traceBegin(label);
  if (trace != null && tf.getBackend() === 'webgpu') {
    const be = tf.backend() as unknown as {device: GPUDevice};
    countGpuCalls(be.device);
    countTfReads(be);
  }
  return trace;
}

/** Prompt (without padding) + new tokens, per row. */
export async function generate(
  model: CausalLMCore,
  inputIds: IdsLike,
  opts: GenerateOptions = {},
): Promise<number[][]> {
  const trace = beginTrace('generate');
  [inputIds, opts] = await onHost(inputIds, opts);
  tracePhase('ids');
  const p = prepare(model, inputIds, opts);
  for await (const _ of run(model, opts, p, trace)) {
    /* events reach opts.onToken */
  }
  return p.trackers.map((t) => [...t.prompt, ...t.generated]);
}

async function* run(
  model: CausalLMCore,
  opts: GenerateOptions,
  p: ReturnType<typeof prepare>,
  trace: HostTrace | null = null,
): AsyncGenerator<TokenEvent, void, undefined> {
  tracePhase('prepare');
  const wholeTrace = hostTraceWholeRun(); // the trace runs to the last token, not the first
  const {rows, mask, maxNew, eos, stops, trackers} = p;
  const V = model.config.vocab_size;
  const userState = opts.state ?? null;
  const queueDepthSet = queueDepth(); // refused here on any backend when set wrong
  if (opts.signal?.aborted) return;
  // With a caller's state, each row's final token is fed too, so that the state covers everything.
  const keepFinal = userState != null;

  // Greedy rows on a GPU: the argmax is taken there and 4 bytes per row come back, not the logits.
  const argmaxOnDevice = rowArgmaxAvailable() && trackers.every((t) => t.sampler.picksArgmax);
  // Other options on a GPU: the whole draw happens there (ops/sample_webgpu), ids come back.
  const gpuSampler =
    argmaxOnDevice || maxNew === 0
      ? null
      : GenerationGpuSampler.create(
          V,
          trackers.map((t) => ({seed: t.sampler.seed, prompt: t.prompt})),
          opts,
        );
  // On webgpu with the fused engine, steps queue ahead of the host (step_queue.ts). The queue is
  // made before the prefill, so that the first pick goes into the fused prefill's last submit.
  let queue: StepQueue | null = null;
  let prefilled: GenerationState;
  try {
    if (maxNew > 0 && (argmaxOnDevice || gpuSampler != null))
      queue = await StepQueue.create(model, rows.length, gpuSampler);
    tracePhase('queue.create');
    const popts = {attentionMask: mask, state: userState, chunkSize: opts.prefillChunkSize};
    await prefillReady(model, rows, popts);
    tracePhase('prefill.ready');
    if (opts.signal?.aborted) throw ABORTED;
    const q = queue;
    prefilled = prefillThen(
      model,
      rows,
      popts,
      q == null ? null : (enc, logits) => q.encodeFirst(enc, logits, rows.length),
    );
  } catch (e) {
    (queue as StepQueue | null)?.dispose();
    gpuSampler?.dispose();
    traceEnd(trace);
    if (e === ABORTED) return; // aborted while the pipelines compiled: nothing generated
    throw e;
  }
  tracePhase('prefill');
  let work = keepFinal ? prefilled.clone() : prefilled;
  let active = rows.map((_, i) => i); // input row of each row of `work`
  const saved = new Map<number, GenerationState>(); // keepFinal: finished rows' final states
  let failed = false;

  const advance = (tokens: number[], finished: boolean[]): void => {
    const keep = finished.flatMap((f, k) => (f ? [] : [k]));
    if (keepFinal) {
      decodeStep(model, work, tokens).logits.dispose();
      finished.forEach((f, k) => {
        if (f) saved.set(active[k], work.select([k]));
      });
    }
    if (keep.length === 0) {
      active = [];
      return;
    }
    if (keep.length < active.length) {
      const next = work.select(keep);
      work.dispose();
      work = next;
    }
    active = keep.map((k) => active[k]);
    if (!keepFinal)
      decodeStep(
        model,
        work,
        keep.map((k) => tokens[k]),
      ).logits.dispose();
  };

  const picksOnDevice = async (): Promise<Int32Array | null> => {
    const t = rowArgmax(work.logits)!;
    try {
      const ids = (await t.data()) as Int32Array;
      return ids.every((id) => id >= 0) ? ids : null; // a row of NaN: the host path says so
    } finally {
      t.dispose();
    }
  };

  // A token of a row: its events, and whether the row stops (EOS, stop ids and strings, length).
  const judge = (row: number, id: number): TokenEvent => {
    const tr = trackers[row];
    tr.seen.push(id);
    tr.generated.push(id);
    let reason: FinishReason | undefined = eos.has(id) ? 'eos' : stops.has(id) ? 'stop_token' : undefined;
    let text: string | undefined;
    if (tr.decoder != null) {
      const piece = tr.decoder.push(id);
      const r = tr.matcher ? tr.matcher.push(piece) : {emit: piece, stopped: false};
      text = r.emit;
      if (r.stopped) reason ??= 'stop_string';
    }
    if (reason == null && tr.generated.length >= maxNew) reason = 'length';
    if (reason != null && reason !== 'stop_string' && tr.decoder != null) {
      const rest = tr.decoder.flush();
      text += tr.matcher ? tr.matcher.push(rest).emit + tr.matcher.flush() : rest;
    }
    const ev: TokenEvent = {row, tokenId: id};
    if (text !== undefined) ev.text = text;
    if (reason != null) ev.finishReason = reason;
    return ev;
  };

  // Picks submitted through the queue and not yet judged, oldest first: rows, the input rows of
  // `work` when it was submitted (the order of its ids); feed, whether its step was asked for;
  // done, whether its ids have come back.
  const inFlight: {pick: QueuedPick; rows: number[]; feed: boolean; done: boolean}[] = [];

  try {
    if (queue != null) {
      const q = queue;
      // Up to `depth` picks are in flight, each queued with the step that feeds its ids (the
      // first one straight after the prefill): while the host reads token n back and judges it,
      // the GPU runs the step feeding n and, at depth 2, the pick of n + 1 and the step feeding
      // that, so it never waits for the host. A step queued ahead runs the state one token past
      // the tokens judged, and a row that stops at token n has had n + 1 picked and fed: that
      // pick is dropped when its ids come back (each pick's ids are mapped to the rows still
      // going by its `rows`), and the row leaves the batch at once (select: the engine's layers
      // go out as tensors, the kept rows come back in; at most one re-import per stopping step,
      // no dead rows whose state would have to be rewound). The picks are those of depth 1: the
      // same logits, and the sampler's Philox counter is each row's token index (generated +
      // picks in flight). With a caller's state, depth 1: the state never runs past the tokens
      // judged, so that a row's final state (keepFinal's `saved`) holds exactly its tokens. A
      // pick is made only for a token some row may still get (maxNewTokens), and its step only
      // when some row may get one more: without keepFinal, the step feeding the last token is
      // skipped when every row ends there.
      const depth = keepFinal ? 1 : queueDepthSet;
      const submitNext = (): boolean => {
        const a = inFlight.length;
        if (a >= depth || active.length === 0 || opts.signal?.aborted) return false;
        // A pick whose ids the host feeds itself (no engine for this batch): nothing runs past it.
        if (a > 0 && !inFlight[a - 1].pick.fed) return false;
        const due = active.map((row) => trackers[row].generated.length + a); // the token index picked
        if (!due.some((n) => n < maxNew)) return false;
        const feed = keepFinal || due.some((n) => n + 1 < maxNew);
        // The first pick went with the prefill (fused engine): only its step is queued now.
        const pick = q.firstPicked ? q.submitFirst(work, feed) : q.submit(work, active, due, feed);
        const entry = {pick, rows: active, feed, done: false};
        pick.ids.then(
          () => (entry.done = true),
          () => undefined, // awaited below, or dropped (an abort, a break, every row stopped)
        );
        inFlight.push(entry);
        return true;
      };
      while (submitNext());
      while (inFlight.length > 0 && active.length > 0 && !opts.signal?.aborted) {
        const {pick, rows: sent, feed, done} = inFlight[0];
        const got = await pick.ids;
        inFlight.shift();
        tracePhase('wait.ids');
        // Row k of `got` is input row sent[k]; the picks of rows that stopped since are dropped.
        const ids = sent === active ? got : Int32Array.from(active, (row) => got[sent.indexOf(row)]);
        if (ids.some((id) => id < 0)) throw new Error('sampling: logits are empty or all NaN');
        // The engine did not apply to this batch size: the ids are fed from the host.
        if (feed && !pick.fed) decodeStep(model, work, Array.from(ids)).logits.dispose();
        const events = active.map((row, k) => judge(row, ids[k]));
        tracePhase('judge');
        if (!wholeTrace) {
          traceEnd(trace);
          trace = null;
        }
        // `work` now holds token n of every row, and at depth 2 possibly token n + 1 (queued).
        const keep = events.flatMap((ev, k) => (ev.finishReason != null ? [] : [k]));
        if (keepFinal)
          events.forEach((ev, k) => {
            if (ev.finishReason != null) saved.set(ev.row, work.select([k]));
          });
        if (keep.length > 0 && keep.length < active.length) {
          const next = work.select(keep);
          work.dispose();
          work = next;
        }
        // A new array only when rows left: a pick submitted with this one needs no mapping.
        if (keep.length < active.length) active = keep.map((k) => active[k]);
        // Without a caller's state the next steps are queued before the events go out, so that the
        // consumer's work overlaps the GPU's; with one it waits for them, so that an abort or a
        // break in the consumer leaves the state with exactly the tokens handed out.
        if (!keepFinal) while (submitNext());
        for (const ev of events) {
          opts.onToken?.(ev);
          yield ev;
        }
        if (keepFinal) submitNext();
        // Waiting for ids that were not back yet let timers, I/O and abort signals run already.
        if (active.length > 0 && done) await breathe();
      }
    } else {
      while (maxNew > 0 && active.length > 0 && !opts.signal?.aborted) {
        const picks = argmaxOnDevice
          ? await picksOnDevice()
          : gpuSampler != null
            ? await gpuSampler.pick(
                work.logits,
                active,
                active.map((row) => trackers[row].generated.length),
              )
            : null;
        const logits = picks == null ? ((await work.logits.data()) as Float32Array) : null;
        tracePhase('wait.ids');
        const events = active.map((row, k) => {
          const tr = trackers[row];
          return judge(row, picks != null ? picks[k] : tr.sampler.next(logits!.subarray(k * V, (k + 1) * V), tr.seen));
        });
        // The next step is submitted before the events go out, so that the consumer's work (and the
        // host's event handling) overlaps the GPU's; the state already holds every token handed out.
        advance(
          events.map((ev) => ev.tokenId),
          events.map((ev) => ev.finishReason != null),
        );
        tracePhase('judge');
        if (!wholeTrace) {
          traceEnd(trace);
          trace = null;
        }
        for (const ev of events) {
          opts.onToken?.(ev);
          yield ev;
        }
        if (active.length > 0) await breathe();
      }
    }
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    traceEnd(trace); // no token came (maxNewTokens 0, an abort, an error)
    try {
      // A consumer that stopped mid-step still leaves the caller's state with every token it was
      // given: each step's tokens were fed before its events were handed out.
      if (keepFinal && !failed) {
        const parts = rows.map((_, row) => saved.get(row) ?? work.select([active.indexOf(row)]));
        userState!.replaceWith(GenerationState.concat(parts));
        parts.forEach((s) => s.dispose());
      }
    } finally {
      // Steps queued ahead whose ids nobody waits for (a break, an abort, every row stopped):
      // their reads fail quietly when the queue is disposed (each has its catch since submitted).
      work.dispose();
      saved.forEach((s) => s.dispose());
      (queue as StepQueue | null)?.dispose();
      gpuSampler?.dispose();
    }
  }
}
