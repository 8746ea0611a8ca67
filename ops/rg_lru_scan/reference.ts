/**
 * Plain reference of the RG-LRU scan, the yardstick every kernel is tested against.
 *   const {h, hLast} = rgLruScanReference(await a.data(), await x.data(), await h0.data(), b, t, e);
 *
 * Shapes (flat, row-major): a, x, h: [b, t, e]; h0, hLast: [b, e].
 *  h[b, t, c] = a[b, t, c] * h[b, t-1, c] + x[b, t, c],   h[b, -1, c] = h0[b, c]
 * Accumulated in float64 here; kernels accumulate in at least float32.
 */
export function rgLruScanReference(
  a: ArrayLike<number>,
  x: ArrayLike<number>,
  h0: ArrayLike<number> | null,
  b: number,
  t: number,
  e: number,
): {h: Float32Array; hLast: Float32Array} {
  const h = new Float32Array(b * t * e);
  const hLast = new Float32Array(b * e);
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < e; c++) {
      let s = h0 ? h0[bi * e + c] : 0;
      for (let ti = 0; ti < t; ti++) {
        const i = (bi * t + ti) * e + c;
        s = a[i] * s + x[i];
        h[i] = s;
      }
      hLast[bi * e + c] = s;
    }
  }
  return {h, hLast};
}

/**
 * Reference of the scan's backward pass (a reverse scan).
 *   g[t] = dh[t] + a[t+1] * g[t+1]   (g[T-1] = dh[T-1] + dhLast)
 *   dx[t] = g[t];  da[t] = g[t] * h[t-1];  dh0 = a[0] * g[0]
 */
export function rgLruScanGradReference(
  a: ArrayLike<number>,
  h: ArrayLike<number>,
  h0: ArrayLike<number> | null,
  dh: ArrayLike<number>,
  dhLast: ArrayLike<number> | null,
  b: number,
  t: number,
  e: number,
): {dx: Float32Array; da: Float32Array; dh0: Float32Array} {
  const dx = new Float32Array(b * t * e);
  const da = new Float32Array(b * t * e);
  const dh0 = new Float32Array(b * e);
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < e; c++) {
      let g = dhLast ? dhLast[bi * e + c] : 0;
      let aNext = 1;
      for (let ti = t - 1; ti >= 0; ti--) {
        const i = (bi * t + ti) * e + c;
        g = dh[i] + aNext * g;
        dx[i] = g;
        const hPrev = ti > 0 ? h[i - e] : h0 ? h0[bi * e + c] : 0;
        da[i] = g * hPrev;
        aNext = a[i];
      }
      dh0[bi * e + c] = aNext * g;
    }
  }
  return {dx, da, dh0};
}
