import type { ShapeContext } from '../graph.js';
import { floatAttributeValue, intAttribute } from '../proto.js';
import { addNamed } from './helpers.js';
import type { OpFamily } from './op.js';

function batchNormShapes(c: ShapeContext) {
  const xs = c.floatInput(0);
  if (xs.length < 2) c.fail(`has an input of shape [${xs}]; expected [N, C, ...]`);
  const channels = xs[1]!;
  for (const k of [1, 2, 3, 4]) {
    const s = c.floatInput(k);
    if (s.length !== 1 || s[0] !== channels)
      c.fail(
        `has input ${k} ("${c.node.input[k]}") of shape [${s}]; expected [${channels}] (one per channel)`,
      );
  }
  const training = intAttribute(c.node, 'training_mode', 0) === 1;
  if (!training && c.node.output.slice(1).some((o) => o !== ''))
    c.fail('has running-statistics outputs without training_mode=1 (ONNX allows them only in training mode)');
  return { xs, channels, training };
}

export const NORMALIZATION_OPS: OpFamily = {
  /**
   * Written as elementwise ops and ReduceMean, whose rules give the gradient (ONNX Runtime's
   * BatchNormalization kernels run training_mode=1 only in training builds, and not on WebGPU):
   * - inference: Y = (X - mean) * (scale / sqrt(var + epsilon)) + B, per channel;
   * - training_mode=1: the mean and (biased) variance of X over every axis but the channels
   *   replace mean and var; the running-statistics outputs, when named, are
   *   input * momentum + batch statistic * (1 - momentum) (the biased variance, as ONNX defines;
   *   runningVariance: 'unbiased' takes PyTorch's Bessel-corrected one instead). They depend on X, so no gradient reaches the loss through them unless
   *   the model uses them; a train step that keeps them updates the buffers, it does not
   *   differentiate them.
   */
  BatchNormalization: {
    floatAttributes: ['epsilon', 'momentum'],
    infer: (c) => {
      const { xs, channels } = batchNormShapes(c);
      return [
        { kind: 'float', shape: [...xs] },
        { kind: 'float', shape: [channels] },
        { kind: 'float', shape: [channels] },
      ];
    },
    lower: (c) => {
      const { xs, channels, training } = batchNormShapes(c);
      const g = c.graph;
      const [input, scale, bias, mean, variance] = c.node.input as [string, string, string, string, string];
      const out = c.node.output;
      const base = out[0]!;
      const perChannel = [channels, ...xs.slice(2).map(() => 1)];
      const epsilon = g.floatConstant([floatAttributeValue(c.node, 'epsilon', 1e-5)]);
      const column = (v: string) => g.reshape(v, perChannel, `${base}_per_channel`);
      if (!training) {
        const rstd = g.op('Sqrt', [g.op('Add', [variance, epsilon], `${base}_var`)], `${base}_std`);
        const factor = g.op('Div', [scale, rstd], `${base}_factor`);
        const centred = g.op('Sub', [input, column(mean)], `${base}_centred`);
        const scaled = g.op('Mul', [centred, column(factor)], `${base}_scaled`);
        addNamed(g, c.index, 'Add', [scaled, column(bias)], [base]);
        return true;
      }
      const axes = [0, ...xs.slice(2).map((_, i) => i + 2)];
      const batchMean = g.reduce('ReduceMean', input, axes, true, `${base}_batch_mean`);
      const centred = g.op('Sub', [input, batchMean], `${base}_centred`);
      const batchVar = g.reduce(
        'ReduceMean',
        g.op('Mul', [centred, centred], `${base}_sq`),
        axes,
        true,
        `${base}_batch_var`,
      );
      const std = g.op('Sqrt', [g.op('Add', [batchVar, epsilon], `${base}_var`)], `${base}_std`);
      const normalised = g.op('Div', [centred, std], `${base}_normalised`);
      const scaled = g.op('Mul', [normalised, column(scale)], `${base}_scaled`);
      addNamed(g, c.index, 'Add', [scaled, column(bias)], [base]);
      const momentum = floatAttributeValue(c.node, 'momentum', 0.9);
      const running = (k: number, running: string, batch: string) => {
        if (!out[k]) return;
        const kept = g.op('Mul', [running, g.floatConstant([momentum])], `${out[k]}_kept`);
        const fresh = g.op(
          'Mul',
          [g.reshape(batch, [channels], `${out[k]}_batch`), g.floatConstant([1 - momentum])],
          `${out[k]}_fresh`,
        );
        addNamed(g, c.index, 'Add', [kept, fresh], [out[k]!]);
      };
      running(1, mean, batchMean);
      if (out[2] && g.runningVariance === 'unbiased') {
        // PyTorch's BatchNorm moves running_var towards the Bessel-corrected variance.
        const n = xs[0]! * xs.slice(2).reduce((a, b) => a * b, 1);
        if (n < 2)
          c.fail(
            `has ${n} value per channel, whose unbiased variance is undefined (runningVariance: 'unbiased'); use a batch of at least 2`,
          );
        running(2, variance, g.op('Mul', [batchVar, g.floatConstant([n / (n - 1)])], `${out[2]}_unbiased`));
      } else running(2, variance, batchVar);
      return true;
    },
  },
};
