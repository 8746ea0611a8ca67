/**
 * Seeded randomness for training whose whole state is one uint32, so a checkpoint can store it
 * and a resumed run draws exactly what the uninterrupted run would have drawn.
 *   const rng = new Rng(42);  rng.shuffle(order);  const s = rng.state;
 *   const again = new Rng(0); again.state = s;          // continues the same stream
 */

export {Rng} from '../rng';

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
