/**
 * Gradient checkpointing: a residual block whose activations are not kept for the backward
 * pass but recomputed there, so training memory holds each block's input and one block's
 * activations at a time instead of every block's.
 *   const y = checkpointedBlock(block, x, info);        // same value as block.forwardWithState(x, info).y
 *   model.forward({inputIds, labels, gradientCheckpointing: true});   // every block so
 *
 * tf.customGrad runs the forward with the tape off (tfjs does not record ops inside a custom
 * gradient's forward) and saves only x and the sequence info; its gradFunc re-runs the block
 * under a fresh tape and returns d/dx and d/d(each trainable variable of the block), which are
 * passed in as inputs so that the outer tape routes their gradients to the variables.
 */
import * as tf from '@tensorflow/tfjs';
import type {SequenceInfo} from '../ops/sequence';
import {adapterVariables} from './lora';
import type {ResidualBlock} from './model_layers';

interface EngineInternals {
  state: {activeTape: unknown};
  gradients(
    f: () => tf.Tensor,
    xs: tf.Tensor[],
    dy?: tf.Tensor,
    allowNoGradients?: boolean,
  ): {value: tf.Tensor; grads: (tf.Tensor | undefined)[]};
}

/** The block's trainable variables: its own weights still trainable, and any LoRA adapter's. */
export function blockTrainableVariables(block: ResidualBlock): tf.Variable[] {
  const own = [...block.namedParams().values()].filter((v) => v.trainable).map((v) => v.read() as tf.Variable);
  return [...own, ...adapterVariables(block)];
}

/**
 * Gradients of f at xs, from inside another gradient's backward pass. tfjs keeps one tape: a
 * gradient computation started while none is recording (the outer one has finished recording
 * and is back-propagating) replaces the outer tape and drops it when done, so the outer one
 * would then fail on a null tape. Keeping and restoring it makes the nesting safe.
 */
function nestedGradients(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  const engine = tf.engine() as unknown as EngineInternals;
  const outer = engine.state.activeTape;
  try {
    const {value, grads} = engine.gradients(f, xs, dy, true);
    value.dispose();
    return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
  } finally {
    engine.state.activeTape = outer;
  }
}

export function checkpointedBlock(block: ResidualBlock, x: tf.Tensor, info: SequenceInfo): tf.Tensor {
  const vars = blockTrainableVariables(block);
  const infoTensors = [info.positions, info.reset, info.tokenMask, info.segment];
  const present = infoTensors.filter((t): t is tf.Tensor => t != null);
  const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor;
    // Saved, not closed over: the caller disposes its SequenceInfo before the backward pass.
    save([xIn, ...present]);
    return {
      value: block.forwardWithState(xIn, info).y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [xs, ...rest] = saved;
        let k = 0;
        const pick = (t: tf.Tensor | null) => (t == null ? null : rest[k++]);
        const again: SequenceInfo = {
          b: info.b,
          t: info.t,
          positions: pick(info.positions)!,
          reset: pick(info.reset)!,
          tokenMask: pick(info.tokenMask),
          segment: pick(info.segment),
          owned: [],
        };
        return nestedGradients(() => block.forwardWithState(xs, again).y, [xs, ...vars], dy as tf.Tensor);
      },
    };
  });
  return run(x, ...vars);
}
