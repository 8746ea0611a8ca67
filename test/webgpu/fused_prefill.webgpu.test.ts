/**
 * The fused WebGPU prefill engine (src/engines/webgpu_prefill): its own kernels (embedding
 * gather, conv1d over a chunk with the ring as history, the RG-LRU scan with the ring and h
 * update) against the project's tfjs ops on the cpu backend on random inputs.
 *
 * Tolerances: float32 on both sides, the same operations in the same order per value: measured
 * ~1e-7 relative on SwiftShader; the bound is 1e-5 (relative, ||a - b|| / ||b||).
 */

import {causalConv1d} from '../../ops/conv1d';
import {blockDiagonal, rgLru} from '../../ops/rg_lru';
import {disposeSequenceInfo, sequenceInfo} from '../../ops/sequence';
import {prefillConvGrid, prefillConvSource} from '../../src/engines/webgpu_prefill/shaders/conv';
import {DIMS, DIMS_WORDS} from '../../src/engines/webgpu_prefill/shaders/dims';
import {prefillEmbedGrid, prefillEmbedSource} from '../../src/engines/webgpu_prefill/shaders/embed';
import {prefillScanGrid, prefillScanSource} from '../../src/engines/webgpu_prefill/shaders/scan';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {onCpu, runKernel, uniform} from './kernel_helpers';

const KERNEL_TOL = 1e-5;

function dimsWords(M: number, t: number, head: number, conv: number): Uint32Array {
  const d = new Uint32Array(DIMS_WORDS);
  d[DIMS.M] = M;
  d[DIMS.T] = t;
  d[DIMS.HEAD] = head;
  d[DIMS.CONV] = conv;
  return d;
}

describeWebGPU('fused WebGPU prefill engine', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  });

  test('embedding gather of a chunk from one piece of the vocabulary matrix, scaled; rows past M untouched', async () => {
    const D = 6,
      start = 10,
      rows = 5,
      M = 3;
    const emb = uniform(50, rows * D);
    const ids = Uint32Array.from([12, 3, 14, 11]); // row 3 lies past M
    const x0 = uniform(51, 4 * D);
    const [, , , x] = await runKernel(
      prefillEmbedSource({D, start, rows, scale: 50.5}),
      [emb, dimsWords(M, M, 0, 0), ids, x0],
      prefillEmbedGrid(D, M, 65535),
    );
    for (let j = 0; j < D; j++) {
      expect(x[0 * D + j]).toBe(Math.fround(emb[2 * D + j] * 50.5));
      expect(x[1 * D + j]).toBe(x0[1 * D + j]); // id 3 lies in another piece
      expect(x[2 * D + j]).toBe(Math.fround(emb[4 * D + j] * 50.5));
      expect(x[3 * D + j]).toBe(x0[3 * D + j]);
    }
  });

  // b rows of t steps; start: each row's first position (0: a document start, fresh history);
  // conv: the ring slot of the chunk's first input.
  test.each([
    ['2 rows, 7 steps, width 4, one row starting a document', 2, 7, 12, 3, 4, [0, 5], 2],
    ['1 row, 2 steps (fewer than the history), width 4, continuing', 1, 2, 8, 2, 4, [9], 1],
    ['2 rows, 2 steps, width 4, a row starting a document with less than the history', 2, 2, 8, 2, 4, [3, 0], 3],
    ['3 rows, 5 steps, width 1 (no history)', 3, 5, 8, 2, 1, [0, 4, 1], 0],
  ] as [string, number, number, number, number, number, number[], number][])(
    'conv1d over a chunk + RG-LRU scan: %s',
    async (_n, b, t, E, H, W, start, conv) => {
      const M = b * t,
        BW = E / H;
      const positions = start.map((p) => Array.from({length: t}, (_, j) => p + j));
      const pos = Uint32Array.from(positions.flat());
      const uy = uniform(60, M * 2 * E, -2, 2);
      const cw = uniform(61, E * W),
        cb = uniform(62, E),
        bx = uniform(63, E),
        ba = uniform(64, E);
      const rp = uniform(65, E, 0.8, 0.999).map((a) => Math.log(Math.exp(-Math.log(a) / 8) - 1));
      const wx = uniform(66, H * BW * BW, -0.5, 0.5),
        wa = uniform(67, H * BW * BW, -0.5, 0.5);
      const ring = uniform(68, b * W * E),
        h0 = uniform(69, b * E);
      // A row at position 0 starts fresh: its history and h are zeros (the state before any token).
      start.forEach((p, r) => {
        if (p === 0) {
          ring.fill(0, r * W * E, (r + 1) * W * E);
          h0.fill(0, r * E, (r + 1) * E);
        }
      });
      const st = Float32Array.from([...ring, ...h0]);
      const dims = dimsWords(M, t, 0, conv);
      // History entry q (oldest first) is ring slot (conv + 1 + q) % W.
      const hist = new Float32Array(b * (W - 1) * E);
      for (let r = 0; r < b; r++) {
        for (let q = 0; q < W - 1; q++) {
          const sl = (conv + 1 + q) % W;
          hist.set(ring.subarray((r * W + sl) * E, (r * W + sl + 1) * E), (r * (W - 1) + q) * E);
        }
      }
      const [, , , , , , cv] = await runKernel(
        prefillConvSource({E, W}),
        [dims, pos, uy, cw, cb, st, new Float32Array(M * E)],
        prefillConvGrid(E, M, 65535),
      );
      const want = await onCpu(() => {
        const all = tf.tensor3d(uy, [b, t, 2 * E]);
        const u = tf.slice(all, [0, 0, 0], [b, t, E]);
        const y = tf.slice(all, [0, 0, E], [b, t, E]);
        const info = sequenceInfo(b, t, {positionIds: positions});
        const c = causalConv1d(u, tf.tensor3d(cw, [E, 1, W]), tf.tensor1d(cb), info, tf.tensor3d(hist, [b, W - 1, E]));
        const p = {
          recurrent_param: tf.tensor1d(rp),
          input_gate_weight: tf.tensor3d(wx, [H, BW, BW]),
          input_gate_bias: tf.tensor2d(bx, [H, BW]),
          recurrent_gate_weight: tf.tensor3d(wa, [H, BW, BW]),
          recurrent_gate_bias: tf.tensor2d(ba, [H, BW]),
        };
        const r = rgLru(c.y, p, info, tf.tensor2d(h0, [b, E]));
        const gx = blockDiagonal(c.y, p.input_gate_weight, p.input_gate_bias);
        const ga = blockDiagonal(c.y, p.recurrent_gate_weight, p.recurrent_gate_bias);
        const out = [c.y, tf.concat([gx, ga], 2), tf.mul(r.y, y), c.state, r.hLast];
        disposeSequenceInfo(info);
        return out;
      });
      expect(relError(cv, want[0])).toBeLessThan(KERNEL_TOL);
      // The scan from the reference's conv outputs and gate pre-activations.
      const got = await runKernel(
        prefillScanSource({E, W}),
        [dims, pos, uy, want[0], want[1], rp, st, new Float32Array(M * E)],
        prefillScanGrid(E, b),
      );
      const [gotSt, o] = [got[6], got[7]];
      expect(relError(o, want[2])).toBeLessThan(KERNEL_TOL);
      expect(relError(gotSt.subarray(b * W * E), want[4])).toBeLessThan(KERNEL_TOL);
      // The ring after the chunk, read as the decode engine reads it: the next input goes to
      // slot (conv + t) % W, the history is the W-1 slots after it, oldest first.
      if (W > 1) {
        const next = (conv + t) % W;
        const newHist = new Float32Array(b * (W - 1) * E);
        for (let r = 0; r < b; r++) {
          for (let q = 0; q < W - 1; q++) {
            const sl = (next + 1 + q) % W;
            newHist.set(gotSt.subarray((r * W + sl) * E, (r * W + sl + 1) * E), (r * (W - 1) + q) * E);
          }
        }
        expect(Array.from(newHist)).toEqual(Array.from(want[3]));
      }
    },
  );
});
