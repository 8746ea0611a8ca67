import {
  MinPProcessor,
  RepetitionPenaltyProcessor,
  Sampler,
  StopStringMatcher,
  TemperatureProcessor,
  TopKProcessor,
  TopPProcessor,
  validateSamplingOptions,
} from '../../src/generation/sampling';
import {seededUniform} from '../helpers';

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const argmax = (xs: ArrayLike<number>): number => {
  let b = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[b]) b = i;
  return b;
};
function randomRow(rnd: () => number, v: number): Float32Array {
  const row = new Float32Array(v);
  for (let i = 0; i < v; i++) row[i] = (rnd() - 0.5) * 10;
  return row;
}

describe('greedy', () => {
  test('temperature 0 or undefined is argmax, first max on ties', () => {
    const logits = f32([0.1, 2.5, -1, 2.5, 0]);
    expect(new Sampler({}).next(logits, [])).toBe(1);
    expect(new Sampler({temperature: 0, topK: 3, topP: 0.5}).next(logits, [])).toBe(1);
    const rnd = seededUniform(3);
    const s = new Sampler({temperature: 0});
    for (let t = 0; t < 50; t++) {
      const row = randomRow(rnd, 97);
      expect(s.next(row, [])).toBe(argmax(row));
    }
  });

  test('the repetition penalty still applies under greedy', () => {
    // 3 -> 3/1.5 = 2 < 2.9
    expect(new Sampler({repetitionPenalty: 1.5}).next(f32([3, 2.9]), [0])).toBe(1);
  });

  test("the caller's logits are not modified", () => {
    const logits = f32([1, 4, 2, -3]);
    new Sampler({temperature: 0.5, topK: 2, topP: 0.9, repetitionPenalty: 1.3, seed: 1}).next(logits, [0, 3]);
    expect(Array.from(logits)).toEqual([1, 4, 2, -3]);
  });
});

describe('sampling', () => {
  test('top-k = 1 equals greedy for any seed', () => {
    const rnd = seededUniform(11);
    for (let seed = 0; seed < 40; seed++) {
      const row = randomRow(rnd, 64);
      expect(new Sampler({temperature: 1.7, topK: 1, seed}).next(row, [])).toBe(argmax(row));
    }
  });

  test('top-p with a tiny p equals greedy', () => {
    const rnd = seededUniform(12);
    for (let seed = 0; seed < 40; seed++) {
      const row = randomRow(rnd, 64);
      expect(new Sampler({temperature: 2, topP: 1e-6, seed}).next(row, [])).toBe(argmax(row));
    }
  });

  test('temperature sampling frequencies match softmax(logits / T) within 0.01 over 20000 draws', () => {
    const logits = [1.0, 2.0, 0.5, -1.0];
    const T = 0.7;
    const e = logits.map((l) => Math.exp(l / T));
    const z = e.reduce((a, b) => a + b, 0);
    const expected = e.map((x) => x / z); // ~[0.169, 0.705, 0.082, 0.044]
    const s = new Sampler({temperature: T, seed: 2024});
    const counts = [0, 0, 0, 0];
    const row = f32(logits);
    const N = 20000;
    for (let i = 0; i < N; i++) counts[s.next(row, [])]++;
    counts.forEach((c, i) => expect(Math.abs(c / N - expected[i])).toBeLessThan(0.01));
  });

  test('same seed gives the same draws, a different seed different ones', () => {
    const row = f32([0.3, 0.1, 0.5, 0.2, 0.4, 0, 0.35, 0.15]);
    const draws = (seed: number): number[] => {
      const s = new Sampler({temperature: 1, seed});
      return Array.from({length: 60}, () => s.next(row, []));
    };
    expect(draws(42)).toEqual(draws(42));
    expect(draws(42)).not.toEqual(draws(43));
    const unseeded = new Sampler({temperature: 1});
    const replay = new Sampler({temperature: 1, seed: unseeded.seed});
    for (let i = 0; i < 20; i++) expect(replay.next(row, [])).toBe(unseeded.next(row, []));
  });

  test('draws never pick a filtered-out token', () => {
    const s = new Sampler({temperature: 5, topK: 2, seed: 9}); // high T flattens what is left
    const row = f32([0, 3, 1, 2.5, -1]);
    for (let i = 0; i < 2000; i++) expect([1, 3]).toContain(s.next(row, []));
  });
});

describe('processors', () => {
  test('repetition penalty: positive logits divided, negative multiplied, each distinct id once', () => {
    const out = new RepetitionPenaltyProcessor(2).apply(f32([2, -1, 0.5, 3, -2]), [0, 1, 0, 4]);
    expect(Array.from(out)).toEqual([1, -2, 0.5, 3, -4]);
    expect(() => new RepetitionPenaltyProcessor(2).apply(f32([1, 2]), [2])).toThrow(
      'repetition penalty: previous id 2 out of range [0, 2)',
    );
  });

  test('temperature divides the logits', () => {
    expect(Array.from(new TemperatureProcessor(0.5).apply(f32([1, -2, 0.25])))).toEqual([2, -4, 0.5]);
  });

  test('top-k keeps the k largest, plus ties at the boundary', () => {
    const row = [1, 5, 3, 3, 2, 0];
    const ninf = -Infinity;
    expect(Array.from(new TopKProcessor(1).apply(f32(row)))).toEqual([ninf, 5, ninf, ninf, ninf, ninf]);
    expect(Array.from(new TopKProcessor(2).apply(f32(row)))).toEqual([ninf, 5, 3, 3, ninf, ninf]);
    expect(Array.from(new TopKProcessor(3).apply(f32(row)))).toEqual([ninf, 5, 3, 3, ninf, ninf]);
    expect(Array.from(new TopKProcessor(4).apply(f32(row)))).toEqual([ninf, 5, 3, 3, 2, ninf]);
    expect(Array.from(new TopKProcessor(6).apply(f32(row)))).toEqual(row);
    expect(Array.from(new TopKProcessor(100).apply(f32(row)))).toEqual(row);
  });

  test('top-p keeps the smallest most-probable set reaching p', () => {
    // probabilities by id: 0.125, 0.5, 0.0625, 0.25, 0.0625
    const probs = [0.125, 0.5, 0.0625, 0.25, 0.0625];
    const logits = probs.map(Math.log);
    const kept = (p: number): number[] => {
      const out = new TopPProcessor(p).apply(f32(logits));
      return Array.from(out).flatMap((l, i) => (l === -Infinity ? [] : [i]));
    };
    expect(kept(0.3)).toEqual([1]);
    expect(kept(0.7)).toEqual([1, 3]); // 0.75
    expect(kept(0.8)).toEqual([0, 1, 3]); // 0.875
    expect(kept(0.9)).toEqual([0, 1, 2, 3]); // needs one of the tied 0.0625s: the lower id
    expect(kept(1)).toEqual([0, 1, 2, 3, 4]);
    // kept tokens keep their logits untouched
    const out = new TopPProcessor(0.7).apply(f32(logits));
    expect(out[1]).toBe(Math.fround(Math.log(0.5)));
    expect(out[3]).toBe(Math.fround(Math.log(0.25)));
  });

  test('top-p after top-k only considers what top-k left', () => {
    const row = new TopKProcessor(2).apply(f32([Math.log(0.4), Math.log(0.3), Math.log(0.3)]));
    // ties at the boundary: all three survive top-k=2; renormalized they are still 0.4/0.3/0.3
    const out = new TopPProcessor(0.6).apply(row);
    expect(Array.from(out).map((l) => l !== -Infinity)).toEqual([true, true, false]);
  });

  test('min-p keeps the tokens at least minP times as probable as the most probable', () => {
    // probabilities by id: 0.125, 0.5, 0.0625, 0.25, 0.0625; min-p 0.2: >= 0.1 stays (no value on a boundary)
    const logits = [0.125, 0.5, 0.0625, 0.25, 0.0625].map(Math.log);
    const kept = (m: number): boolean[] =>
      Array.from(new MinPProcessor(m).apply(f32(logits))).map((l) => l !== -Infinity);
    expect(kept(0.2)).toEqual([true, true, false, true, false]);
    expect(kept(0.4)).toEqual([false, true, false, true, false]);
    expect(kept(0.9)).toEqual([false, true, false, false, false]);
    expect(kept(0)).toEqual([true, true, true, true, true]);
    // After top-p the ratio is the same: min-p 0.4 on what top-p 0.8 left (ids 0, 1, 3).
    const row = new TopPProcessor(0.8).apply(f32(logits));
    expect(Array.from(new MinPProcessor(0.4).apply(row)).map((l) => l !== -Infinity)).toEqual([
      false,
      true,
      false,
      true,
      false,
    ]);
    // The sampler applies it after top-p: with min-p 0.9 only the most probable is ever drawn.
    const s = new Sampler({temperature: 1, topP: 0.9, minP: 0.9, seed: 3});
    for (let i = 0; i < 20; i++) expect(s.next(f32(logits), [])).toBe(1);
  });
});

describe('validateSamplingOptions', () => {
  test('accepts sensible options', () => {
    expect(() => validateSamplingOptions({})).not.toThrow();
    expect(() =>
      validateSamplingOptions({temperature: 0, topK: 1, topP: 1, repetitionPenalty: 0.5, seed: 0}),
    ).not.toThrow();
  });

  test.each([
    [{temperature: -0.1}, 'temperature must be >= 0, got -0.1'],
    [{temperature: NaN}, 'temperature must be >= 0, got NaN'],
    [{topK: 0}, 'topK must be an integer >= 1, got 0'],
    [{topK: 2.5}, 'topK must be an integer >= 1, got 2.5'],
    [{topP: 0}, 'topP must be in (0, 1], got 0'],
    [{topP: 1.5}, 'topP must be in (0, 1], got 1.5'],
    [{minP: -0.1}, 'minP must be in [0, 1], got -0.1'],
    [{minP: 1.5}, 'minP must be in [0, 1], got 1.5'],
    [{repetitionPenalty: 0}, 'repetitionPenalty must be > 0, got 0'],
    [{repetitionPenalty: -1}, 'repetitionPenalty must be > 0, got -1'],
    [{seed: 1.5}, 'seed must be an integer, got 1.5'],
  ])('%p -> %s', (opts, msg) => {
    expect(() => validateSamplingOptions(opts)).toThrow(new Error(msg));
    expect(() => new Sampler(opts)).toThrow(new Error(msg));
  });
});

describe('StopStringMatcher', () => {
  const run = (stops: string[], pushes: string[]) => {
    const m = new StopStringMatcher(stops);
    const emits: string[] = [];
    let stoppedAt = -1;
    pushes.forEach((p, i) => {
      const r = m.push(p);
      emits.push(r.emit);
      if (r.stopped && stoppedAt < 0) stoppedAt = i;
    });
    return {emits, stoppedAt, rest: m.flush()};
  };

  test('a stop string split across pushes', () => {
    expect(run(['<end>'], ['Hello <e', 'n', 'd> never shown'])).toEqual({
      emits: ['Hello ', '', ''],
      stoppedAt: 2,
      rest: '',
    });
    expect(run(['\n\nUser:'], ['Sure.\n', '\nUs', 'er: hi'])).toEqual({
      emits: ['Sure.', '', ''],
      stoppedAt: 2,
      rest: '',
    });
  });

  test('text emitted with the stop string is cut right before it', () => {
    expect(run(['STOP'], ['abc', 'deSTOPxyz'])).toEqual({emits: ['abc', 'de'], stoppedAt: 1, rest: ''});
  });

  test('a false start is released once it cannot match any more', () => {
    expect(run(['<end>'], ['a <e', 'x', 'b'])).toEqual({emits: ['a ', '<ex', 'b'], stoppedAt: -1, rest: ''});
    expect(run(['<end>'], ['tail <en'])).toEqual({emits: ['tail '], stoppedAt: -1, rest: '<en'});
  });

  test('after stopping, further pushes emit nothing', () => {
    const m = new StopStringMatcher(['x']);
    expect(m.push('axb')).toEqual({emit: 'a', stopped: true});
    expect(m.push('more')).toEqual({emit: '', stopped: true});
    expect(m.flush()).toBe('');
  });

  test('with several stops, the one that completes first wins, however the text is split', () => {
    const stops = ['abcX', 'bcd', '\n\n'];
    const text = 'xx abcd yy\n\nzz';
    const whole = run(stops, [text]);
    expect(whole.emits.join('')).toBe('xx a');
    const rnd = seededUniform(5);
    for (let t = 0; t < 200; t++) {
      const pieces: string[] = [];
      for (let i = 0; i < text.length; ) {
        const n = 1 + Math.floor(rnd() * 4);
        pieces.push(text.slice(i, i + n));
        i += n;
      }
      const r = run(stops, pieces);
      expect(r.emits.join('') + r.rest).toBe('xx a');
      expect(r.stoppedAt).toBeGreaterThanOrEqual(0);
    }
  });

  test('no stop strings: everything passes through; empty stop strings are rejected', () => {
    expect(run([], ['a', 'b'])).toEqual({emits: ['a', 'b'], stoppedAt: -1, rest: ''});
    expect(() => new StopStringMatcher(['ok', ''])).toThrow('stop strings must not be empty');
  });
});
