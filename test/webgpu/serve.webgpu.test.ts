/**
 * The serve scheduler on webgpu, where the batch lives in the slots of one fused decode engine
 * (src/serve/slots.ts): rows join (FusedDecoder.importRow) and leave (the slot is freed) at any
 * step, tokens are drawn on the GPU, and each request still gets the tokens that model.generate
 * gives it alone on the same backend (greedy and seeded, n > 1), its logprobs are those of its own
 * logits, and a cancelled stream frees its slot. tiny-a with the tiny tokenizer. Up to 4 rows
 * the slots' engines sum a row as generate's one-row engine does (src/engines/webgpu_decode/
 * tuning.ts), so the reference is model.generate; at 8 rows they are tuned as for 8 rows
 * (FusedDecoderOptions.tuningRows), and the reference is each request alone on such a scheduler,
 * through grows 1 -> 8 and a shrink.
 */
import * as path from 'path';
import {FusedDecoder, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {matmulMaxSplit} from '../../src/engines/webgpu_prefill/shaders/matmul';
import {decodeStep, prefill} from '../../src/generation/state';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {type Job, Scheduler, type SequenceEvent} from '../../src/serve/scheduler';
import {startServer} from '../../src/serve/server';
import {checkMaxBatch, SHRINK_AFTER, slotBuckets} from '../../src/serve/slots';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

const FIX = path.join(__dirname, '../fixtures');

/** Prompts of one length: each prefill shape costs SwiftShader seconds of pipeline compiling. */
const promptOf = (bos: number, i: number) => [
  bos,
  ...Array.from({length: 7}, (_, k) => 10 + ((i * 37 + k * 11) % 400)),
];

type JobSpec = Omit<Job, 'onEvent' | 'signal'>;

describeWebGPU('serve scheduler on webgpu (engine slots)', () => {
  let model: RecurrentGemmaForCausalLM;
  let tok: GemmaTokenizer;
  beforeAll(async () => {
    await initNodeWebGPU();
    model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    tok = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
  });
  afterAll(() => model?.dispose());

  /** The request's tokens from model.generate alone (choice i: row i, seed + i). */
  async function alone(j: JobSpec): Promise<number[][]> {
    const out = await model.generate(Array(j.n).fill(j.promptIds), {
      maxNewTokens: j.maxTokens,
      temperature: j.temperature,
      topP: j.topP,
      seed: j.seed,
      tokenizer: tok,
    });
    return out.map((r) => r.slice(j.promptIds.length));
  }

  test('importRow places a row as importLayers does, whatever the ring position', async () => {
    expect(tf.getBackend()).toBe('webgpu');
    const prompts = [0, 1, 2].map((i) => promptOf(tok.bosId, i));
    const st = prefill(model, prompts);
    const one = st.select([1]); // row 1 alone, the same values
    const a = new FusedDecoder(model, 3),
      b = new FusedDecoder(model, 3);
    try {
      a.importLayers(st.layers);
      // b has run 5 steps of other tokens first: its ring head and conv slot are elsewhere.
      for (let k = 0; k < 5; k++) b.step([3, 4, 5], [k, k, k]).dispose();
      b.importRow(0, st.layers, 0);
      b.importRow(2, st.layers, 2);
      b.importRow(1, one.layers); // row 1 from a state of its own
      const pos = st.positions;
      for (let k = 0; k < 3; k++) {
        const ids = [20 + k, 30 + k, 40 + k],
          p = pos.map((x) => x + k);
        const la = a.step(ids, p),
          lb = b.step(ids, p);
        expect(Array.from(await lb.data())).toEqual(Array.from(await la.data()));
        tf.dispose([la, lb]);
      }
      const ea = a.exportLayers(),
        eb = b.exportLayers();
      for (let i = 0; i < ea.length; i++) {
        for (const key of Object.keys(ea[i])) {
          const ta = (ea[i] as unknown as Record<string, tf.Tensor>)[key],
            tb = (eb[i] as unknown as Record<string, tf.Tensor>)[key];
          expect(Array.from(await tb.data())).toEqual(Array.from(await ta.data()));
        }
      }
      tf.dispose([...ea, ...eb].flatMap((l) => Object.values(l as unknown as Record<string, tf.Tensor>)));
    } finally {
      a.dispose();
      b.dispose();
      st.dispose();
      one.dispose();
    }
  }, 900_000);

  test('tuningRows: a row of an 8-row engine has the bits of the same row alone (the default tuning differs)', async () => {
    // Wide enough that the GEMV threads matter: 768 inputs are 192 vec4 slots, which 128 threads
    // sum as (s + s+128) + s+64 and 64 threads as (s + s+64) + s+128. Weights: the model's random init.
    const wide = new RecurrentGemmaForCausalLM({
      vocab_size: 300,
      hidden_size: 768,
      lru_width: 256,
      intermediate_size: 512,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      num_hidden_layers: 2,
      attention_window_size: 8,
      block_types: ['recurrent', 'attention'],
    });
    const B = 8,
      steps = 3;
    const ids = (r: number, k: number) => (r * 37 + k * 11 + 5) % 300;
    /** Logits per step of rows [0, B) run in one engine made by make(B), and each row in its own make(1). */
    const run = async (make: (b: number) => FusedDecoder) => {
      const together: Float32Array[] = [];
      const eng = make(B);
      for (let k = 0; k < steps; k++) {
        const l = eng.step(
          Array.from({length: B}, (_, r) => ids(r, k)),
          Array(B).fill(k),
        );
        together.push((await l.data()) as Float32Array);
        l.dispose();
      }
      eng.dispose();
      const alone: Float32Array[][] = [];
      for (let r = 0; r < B; r++) {
        const one = make(1);
        alone.push([]);
        for (let k = 0; k < steps; k++) {
          const l = one.step([ids(r, k)], [k]);
          alone[r].push((await l.data()) as Float32Array);
          l.dispose();
        }
        one.dispose();
      }
      const V = 300;
      let same = true;
      for (let r = 0; r < B; r++)
        for (let k = 0; k < steps; k++) {
          const a = together[k].subarray(r * V, (r + 1) * V);
          if (!a.every((x, i) => Object.is(x, alone[r][k][i]))) same = false;
        }
      return same;
    };
    try {
      expect(await run((b) => new FusedDecoder(wide, b, {tuningRows: B}))).toBe(true);
      // Without the option a 1-row engine takes 128 GEMV threads and an 8-row one 64: other sums.
      expect(await run((b) => new FusedDecoder(wide, b))).toBe(false);
      expect(() => new FusedDecoder(wide, 4, {tuningRows: 2})).toThrow(/tuningRows must be an integer in \[4, 1024\]/);
    } finally {
      wide.dispose();
    }
  }, 900_000);

  test('--max-batch: past the engine rows (32) refused in one line; 4 rows fit', async () => {
    await expect(checkMaxBatch(model, 33)).rejects.toThrow(
      /^--max-batch 33: the webgpu decode engine holds at most 32 sequences$/,
    );
    await expect(checkMaxBatch(model, 4)).resolves.toBeUndefined();
    expect(slotBuckets(32)).toEqual([1, 2, 4, 8, 16, 32]);
    expect(slotBuckets(12)).toEqual([1, 2, 4, 8, 12]);
    expect(slotBuckets(1)).toEqual([1]);
  }, 900_000);

  test('jobs joining and leaving at different steps each get their tokens alone (greedy, seeded, n = 2)', async () => {
    const jobs: JobSpec[] = [0, 1, 2, 3, 4].map((i) => ({
      promptIds: promptOf(tok.bosId, i),
      n: i === 3 ? 2 : 1,
      maxTokens: 3 + 2 * i,
      temperature: i % 2 === 0 ? 0 : 0.9,
      topP: i === 1 ? 0.8 : undefined,
      seed: 40 + i,
      stop: [],
      logprobs: null,
    }));
    // Engine slots keep the prefill matmuls unsplit while the scheduler lives (group = alone bits).
    const splitBefore = matmulMaxSplit();
    expect(splitBefore).toBeGreaterThan(1);
    const sched = new Scheduler(model, tok, {maxBatch: 4, maxQueue: 8, eosIds: []});
    expect(sched.usesSlots).toBe(true);
    expect(matmulMaxSplit()).toBe(1);
    const got: number[][][] = jobs.map((j) => Array.from({length: j.n}, () => []));
    const run = (i: number, onEvent?: (ev: SequenceEvent) => void) =>
      sched.submit({
        ...jobs[i],
        onEvent: (ev) => {
          got[i][ev.choice].push(ev.tokenId);
          onEvent?.(ev);
        },
      });
    // Job 0 alone first; 1 and 2 join after its second token, 3 (two rows) after job 1's first;
    // 4 waits for a free slot.
    const later: Promise<void>[] = [];
    let joined = false;
    const first = run(0, () => {
      if (got[0][0].length === 2) {
        later.push(
          run(1, () => {
            if (!joined) {
              joined = true;
              later.push(run(3), run(4));
            }
          }),
          run(2),
        );
      }
    });
    await first;
    while (later.length < 4) await new Promise((r) => setTimeout(r, 10));
    await Promise.all(later);
    expect(sched.stats.busy).toBe(0);
    expect(sched.stats.engineRows).toBe(4);
    expect(sched.stats.steps).toBeLessThan(got.flat(2).length);
    for (let i = 0; i < jobs.length; i++) expect(got[i]).toEqual(await alone(jobs[i]));
    await sched.close();
    expect(matmulMaxSplit()).toBe(splitBefore);
  }, 900_000);

  /** The request's tokens run alone on a scheduler of `maxBatch` slots (choice by choice). */
  async function aloneOn(maxBatch: number, j: JobSpec): Promise<number[][]> {
    const sched = new Scheduler(model, tok, {maxBatch, maxQueue: 1, eosIds: []});
    const out: number[][] = Array.from({length: j.n}, () => []);
    await sched.submit({...j, onEvent: (ev) => out[ev.choice].push(ev.tokenId)});
    expect(sched.stats.engineRows).toBe(j.n);
    await sched.close();
    return out;
  }

  test('8 rows: joins and leaves at different steps, a queued job, grows and a shrink: each request as alone', async () => {
    // Rows: 0 first; 1, 2 after its second token; 3 (n = 2), 4, 5 (n = 2) after 1's first token
    // (8 rows); 6 queued until a row frees; the short ones end, 0 and 6 go on in 2 rows.
    const spec = [
      {n: 1, maxTokens: 40, temperature: 0},
      {n: 1, maxTokens: 4, temperature: 0.9, topP: 0.8},
      {n: 1, maxTokens: 5, temperature: 0},
      {n: 2, maxTokens: 6, temperature: 0.9, topP: 0.8},
      {n: 1, maxTokens: 3, temperature: 0.7},
      {n: 2, maxTokens: 7, temperature: 0},
      {n: 1, maxTokens: 25, temperature: 0.8, topP: 0.9},
    ];
    const jobs: JobSpec[] = spec.map((x, i) => ({
      ...x,
      promptIds: promptOf(tok.bosId, 10 + i),
      seed: 70 + i,
      stop: [],
      logprobs: null,
    }));
    const sched = new Scheduler(model, tok, {maxBatch: 8, maxQueue: 8, eosIds: []});
    const got: number[][][] = jobs.map((j) => Array.from({length: j.n}, () => []));
    let most = 0;
    const run = (i: number, onEvent?: () => void) =>
      sched.submit({
        ...jobs[i],
        onEvent: (ev) => {
          got[i][ev.choice].push(ev.tokenId);
          most = Math.max(most, sched.stats.engineRows ?? 0);
          onEvent?.();
        },
      });
    const later: Promise<void>[] = [];
    let second = false;
    const first = run(0, () => {
      if (got[0][0].length === 2)
        later.push(
          run(1, () => {
            if (!second) {
              second = true;
              later.push(run(3), run(4), run(5), run(6));
            }
          }),
          run(2),
        );
    });
    await first;
    await Promise.all(later);
    expect(later).toHaveLength(6);
    expect(most).toBe(8);
    const st = sched.stats;
    expect(st.busy).toBe(0);
    // Grown to 8 rows, then shrunk once 0 and 6 fitted in 2 rows for SHRINK_AFTER steps.
    expect(st.engineRows).toBeLessThanOrEqual(2);
    expect(st.engines).toBeGreaterThanOrEqual(3);
    expect(st.deadRows).toBeGreaterThan(0);
    expect(SHRINK_AFTER).toBeLessThan(25);
    await sched.close();
    for (let i = 0; i < jobs.length; i++) {
      expect(got[i].map((c) => c.length)).toEqual(Array(jobs[i].n).fill(jobs[i].maxTokens));
      expect(got[i]).toEqual(await aloneOn(8, jobs[i]));
    }
  }, 1_800_000);

  test('8 rows through the server: streaming = non-streaming = alone, concurrently', async () => {
    const srv = await startServer({model, tok, modelId: 'tiny', port: 0, maxBatch: 8, maxQueue: 16});
    try {
      const ask = async (i: number, stream: boolean) => {
        const body = {
          model: 'tiny',
          prompt: promptOf(tok.bosId, 20 + (i % 4)),
          max_tokens: 6 + (i % 4),
          temperature: i % 2 === 0 ? 0 : 0.8,
          top_p: 0.9,
          seed: 5 + (i % 4),
          stream,
        };
        const res = await fetch(`${srv.url}/v1/completions`, {
          method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify(body),
        });
        expect(res.status).toBe(200);
        if (!stream) return ((await res.json()) as {choices: {text: string}[]}).choices[0].text;
        let text = '';
        for (const line of (await res.text()).split('\n\n')) {
          const data = line.replace(/^data: /, '');
          if (data === '' || data === '[DONE]') continue;
          text += (JSON.parse(data) as {choices: {text: string}[]}).choices[0]?.text ?? '';
        }
        return text;
      };
      // 8 at once: prompts 0..3 streamed and not.
      const texts = await Promise.all(Array.from({length: 8}, (_, i) => ask(i, i >= 4)));
      for (let i = 0; i < 4; i++) expect(texts[i + 4]).toBe(texts[i]);
      // Alone, one after the other.
      for (let i = 0; i < 4; i++) expect(await ask(i, false)).toBe(texts[i]);
    } finally {
      await srv.close();
    }
  }, 900_000);

  test('a cancelled stream frees its slot at the next step; a queued job takes it', async () => {
    const sched = new Scheduler(model, tok, {maxBatch: 1, maxQueue: 4, eosIds: []});
    const long: JobSpec = {
      promptIds: promptOf(tok.bosId, 5),
      n: 1,
      maxTokens: 500,
      temperature: 0,
      seed: 1,
      stop: [],
      logprobs: null,
    };
    const next: JobSpec = {...long, promptIds: promptOf(tok.bosId, 6), maxTokens: 4, temperature: 0.7, seed: 9};
    const ac = new AbortController();
    const a: number[] = [],
      b: number[] = [];
    let busyAtCancel = -1;
    const pa = sched.submit({
      ...long,
      signal: ac.signal,
      onEvent: (ev) => {
        a.push(ev.tokenId);
        if (a.length === 3) {
          busyAtCancel = sched.stats.busy;
          ac.abort();
        }
      },
    });
    const pb = sched.submit({...next, onEvent: (ev) => b.push(ev.tokenId)});
    expect(sched.stats.queued).toBe(1); // the first was admitted at once
    await pa;
    await pb;
    expect(busyAtCancel).toBe(1);
    expect(a).toHaveLength(3); // nothing after the step that saw the abort
    expect([b]).toEqual(await alone(next));
    expect(sched.stats.busy).toBe(0);
    await sched.close();
  }, 900_000);

  test('logprobs are the log-softmax of the request’s own logits', async () => {
    const j: JobSpec = {
      promptIds: promptOf(tok.bosId, 7),
      n: 1,
      maxTokens: 3,
      temperature: 0,
      seed: 3,
      stop: [],
      logprobs: 2,
    };
    const other: JobSpec = {...j, promptIds: promptOf(tok.bosId, 8), logprobs: null, temperature: 0.8, maxTokens: 5};
    const sched = new Scheduler(model, tok, {maxBatch: 2, maxQueue: 4, eosIds: []});
    const evs: SequenceEvent[] = [];
    await Promise.all([
      sched.submit({...j, onEvent: (ev) => evs.push(ev)}),
      sched.submit({...other, onEvent: () => {}}),
    ]);
    await sched.close();
    // The reference: the same prompt alone through prefill and decodeStep, log-softmax in float64 here.
    const st = prefill(model, [j.promptIds]);
    const V = model.config.vocab_size;
    for (const ev of evs) {
      const row = Array.from(await st.logits.data());
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
      const order = row.map((x, id) => ({id, x})).sort((p, q) => q.x - p.x || p.id - q.id);
      expect(ev.tokenId).toBe(order[0].id); // greedy
      expect(ev.logprob!.logprob).toBeCloseTo(row[ev.tokenId] - lse, 5);
      expect(ev.logprob!.top.map((t) => t.id)).toEqual([order[0].id, order[1].id]);
      expect(ev.logprob!.top[1].logprob).toBeCloseTo(order[1].x - lse, 5);
      expect(row).toHaveLength(V);
      decodeStep(model, st, [ev.tokenId]).logits.dispose();
    }
    expect(evs).toHaveLength(3);
    st.dispose();
    expect(fusedDecoderFor(model, 1)).not.toBeNull();
  }, 900_000);
});
