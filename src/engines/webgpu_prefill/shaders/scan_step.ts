/**
 * The RG-LRU step both prefill scans run (scan.ts serially, scan_chunked.ts in chunks), as WGSL:
 * softplusT (tfjs's softplus) and rgLruStep(i, c, sp) -> vec2(a, xn), the decay and the normalised
 * input of token row i, channel c: a = exp(-8 sigmoid(ga) sp), xn = conv * sigmoid(gx) * sqrt(1 - a^2),
 * with a = 0 and the factor 1 at a document start (position 0); sp = softplus(recurrent_param[c]).
 * The step is then h = a h + xn. It reads the bindings pos [M], cv [M, E] and gates [M, 2E]
 * (input gate | recurrent gate pre-activations), and COMMON_WGSL's sigm.
 *   import {COMMON_WGSL} from '../../webgpu_decode/shaders/common';
 *   const code = `${COMMON_WGSL}${scanStepWgsl(config.lru_width)}`;   // then the bindings and main
 *
 * Shape letters: M token rows, E lru_width.
 */

/** softplusT and rgLruStep for lru_width E (see the module comment). */
export function scanStepWgsl(E: number): string {
  return `
fn softplusT(x : f32) -> f32 {
  // tfjs's: exp(x) below log(eps) + 2, x above -(log(eps) + 2), log(1 + exp(x)) between.
  let th = -13.942385152878742;
  if (x > -th) { return x; }
  if (x < th) { return exp(x); }
  return log(1.0 + exp(x));
}

fn rgLruStep(i : u32, c : u32, sp : f32) -> vec2<f32> {
  let g = i * ${2 * E}u + c;
  let x = cv[i * ${E}u + c] * sigm(gates[g]);
  if (pos[i] == 0u) { return vec2<f32>(0.0, x); }
  let logA = (sigm(gates[g + ${E}u]) * sp) * -8.0;
  return vec2<f32>(exp(logA), x * sqrt(1.0 - exp(logA * 2.0)));
}`;
}
