import { ACTIVATION_OPS } from './activation.js';
import { CONV_OPS } from './conv.js';
import { EXTREMUM_OPS } from './extremum.js';
import { LAYOUT_OPS } from './layout.js';
import { NORMALIZATION_OPS } from './normalization.js';
import type { OpFamily } from './op.js';
import { POOL_OPS } from './pool.js';
import { UNARY_OPS } from './unary.js';

export type { OpFamily, OpModule } from './op.js';

/**
 * Every op defined by an op module (shape inference, host evaluation, backward rule or lowering
 * together; see op.ts). graph.ts infers and lowers through it, rules.ts takes its backward rules.
 * An op family is one file; adding one is a file and a line here.
 */
export const OP_MODULES: OpFamily = {
  ...UNARY_OPS,
  ...CONV_OPS,
  ...POOL_OPS,
  ...NORMALIZATION_OPS,
  ...ACTIVATION_OPS,
  ...EXTREMUM_OPS,
  ...LAYOUT_OPS,
};
