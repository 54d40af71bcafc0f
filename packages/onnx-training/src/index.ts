export { IR_VERSION, OPSET_VERSION } from './graphs/onnx-proto.js';
export {
  buildAccSGDUpdateModel,
  buildUpdateGraph,
  UPDATE_GRAPH_OPS,
  type UpdateGraphParam,
  type UpdateModelParam,
  updateGraphNames,
} from './graphs/update-graph.js';
export { buildIdentityModel, buildLeastSquaresModel } from './graphs/utility-graphs.js';
export {
  OnnxAccSGD,
  type OnnxAccSGDOptions,
  type ParamGroupInput,
  type ParamInput,
} from './onnx-optimizer.js';

export {
  EXECUTION_PROVIDERS,
  type ExecutionProvider,
  type OrtModule,
  type OrtSession,
  type OrtTensor,
  SHARED_ORT_SYMBOL,
} from './runtime.js';
