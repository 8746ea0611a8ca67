/**
 * The package's one seeded PRNG (mulberry32), whose whole state is one uint32: data splits,
 * token sampling and training all draw from it, so a seed means the same thing everywhere and a
 * checkpoint can store the state (a resumed run draws what the uninterrupted one would have).
 * Independent streams get seeds derived from (seed, purpose, index).
 *   const rng = new Rng(deriveSeed(42, 1, 0));  rng.next();  rng.shuffle(order);   // seed 42, purpose 1, epoch 0
 *   const again = new Rng(0);  again.state = rng.state;     // continues the same stream
 */

/** mulberry32: tiny, fast and good enough for shuffles and dropout seeds. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  get state(): number {
    return this.s;
  }
  set state(v: number) {
    this.s = v >>> 0;
  }

  nextUint32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Fisher-Yates, in place. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/** FNV-1a over numbers: stream seeds derived from (seed, purpose, index), and data fingerprints. */
export function hashNumbers(values: Iterable<number>, h = 0x811c9dc5): number {
  for (const v of values) {
    let x = v | 0;
    for (let k = 0; k < 4; k++) {
      h ^= x & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
      x >>>= 8;
    }
  }
  return h >>> 0;
}

/** A seed for one independent stream, e.g. deriveSeed(seed, 1, epoch) for an epoch's shuffle. */
export function deriveSeed(seed: number, ...parts: number[]): number {
  return hashNumbers([seed, ...parts]);
}
