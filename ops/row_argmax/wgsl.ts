/**
 * The row argmax's WGSL, shared by the tfjs kernel (webgpu.ts) and the plain WebGPU runner
 * (runner.ts): one workgroup of THREADS invocations per row; each scans a strided share of the
 * row (coalesced reads) keeping its first maximum, then the workgroup reduces the candidates in
 * shared memory. NaN is recognised from its bits (drivers may assume no NaN in float comparisons)
 * and never wins; a row of NaN gives -1.
 *   const {decls, body} = rowArgmaxWgsl('x', 'result', 'uniforms.n', 'i32(workgroupId.x)', 'i32(localId.x)');
 *   const shared = argmaxCompareWgsl(64);   // bestV, bestI, isNan, beats (the fused decode step's argmax uses them)
 *
 * Shape letters: n values per row. In WGSL: row the workgroup's row, t the invocation within it.
 */

export const ARGMAX_THREADS = 256;

/**
 * WGSL module-scope declarations of the argmax reductions (this op's and the fused decode step's,
 * src/engines/webgpu_decode/shaders/argmax.ts): the T candidates bestV / bestI in workgroup
 * memory, isNan from the bits, and beats, the order in which candidates win.
 */
export function argmaxCompareWgsl(T: number): string {
  return `
var<workgroup> bestV : array<f32, ${T}>;
var<workgroup> bestI : array<i32, ${T}>;

fn isNan(v : f32) -> bool {
  let u = bitcast<u32>(v);
  return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u;
}

// Candidate (v, i) beats (bv, bi): i = -1 is "none"; a larger value, or an equal one at a smaller index.
fn beats(v : f32, i : i32, bv : f32, bi : i32) -> bool {
  if (i < 0) { return false; }
  if (bi < 0) { return true; }
  return v > bv || (v == bv && i < bi);
}`;
}

/**
 * Module-scope declarations (workgroup arrays, helpers) and the body of the entry point, reading
 * row `row` of `x` (n = the expression `n`) and writing its first-max index to `out[row]`.
 */
export function rowArgmaxWgsl(
  x: string,
  out: string,
  n: string,
  row: string,
  t: string,
): {decls: string; body: string} {
  const T = ARGMAX_THREADS;
  const decls = argmaxCompareWgsl(T);
  const body = `
        let row = ${row};
        let t = ${t};
        let n = ${n};
        let base = row * n;
        var bv = 0.0;
        var bi = -1;
        for (var i = t; i < n; i = i + ${T}) {
          let v = f32(${x}[base + i]);
          // Within one invocation the indices only grow, so a tie never replaces.
          if (!isNan(v) && (bi < 0 || v > bv)) { bv = v; bi = i; }
        }
        bestV[t] = bv;
        bestI[t] = bi;
        workgroupBarrier();
        for (var s = ${T / 2}; s > 0; s = s / 2) {
          if (t < s && beats(bestV[t + s], bestI[t + s], bestV[t], bestI[t])) {
            bestV[t] = bestV[t + s];
            bestI[t] = bestI[t + s];
          }
          workgroupBarrier();
        }
        if (t == 0) { ${out}[row] = bestI[0]; }`;
  return {decls, body};
}
