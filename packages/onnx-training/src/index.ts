export { FORWARD_OPS, MAX_OPSET, MIN_OPSET } from './autodiff/forward-model.js';
export {
  type AutodiffOptions,
  buildGradientModel,
  type GradientModel,
  gradientOutputName,
  LOSS_KINDS,
  type LossKind,
} from './autodiff/gradient.js';
export { DIFFERENTIABLE_OPS } from './autodiff/rules.js';
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
export {
  type Batch,
  type LearningRateSchedule,
  OnnxTrainer,
  type OnnxTrainerOptions,
  type TrainerHyperparams,
  type TrainerParamGroup,
} from './train-step/onnx-trainer.js';
export {
  buildTrainStepModel,
  type TrainStepModel,
  type TrainStepOptions,
  type TrainStepParam,
} from './train-step/train-step-model.js';
