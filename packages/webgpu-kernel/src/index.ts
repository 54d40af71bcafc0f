/// <reference types="@webgpu/types" preserve="true" />
export { AccSGDDeviceError, AccSGDDeviceLostError, type DeviceFailure } from './errors.js';
export { createFlatStorage, type FlatStorage, type FlatTensor } from './flat-storage.js';
export {
  type AccessType,
  accsgdUpdatePipeline,
  accsgdUpdateWGSL,
  defaultWorkgroupsPerDispatch,
  dispatchSize,
  SEGMENT_ACTIVE,
  SEGMENT_INITIALISE,
  type StorageType,
  UNIFORM_BYTES,
  VEC4_ELEMENTS,
  vec4Eligible,
  WORKGROUP_SIZE,
} from './kernels/accsgd-update.js';
export {
  type GradientPresence,
  type SegmentInput,
  type StepOptions,
  type TensorInput,
  uniformCoefficients,
  WebGPUAccSGD,
  type WebGPUAccSGDOptions,
  type WebGPUGroupInput,
  type WebGPUParamGroup,
  type WebGPUTensorListGroup,
} from './webgpu-optimizer.js';
