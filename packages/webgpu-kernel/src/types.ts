import type { Hyperparams, NonFinitePolicy } from '@accsgd/core';
import type { StorageType } from './kernels/accsgd-update.js';

/** One tensor inside a group's flat storage. */
export interface SegmentInput {
  /** Name in the state file; default: the tensor's index over all groups ("0", "1", ...), as in PyTorch. */
  name?: string;
  /** First element of the tensor in the flat params (and grads) buffer. */
  offset: number;
  /** Shape, checked against state files; default: [size]. */
  shape?: number[];
  /** Element count; default: the product of `shape`. */
  size?: number;
}

/**
 * A parameter group over flat storage the caller owns: every tensor of the group sits at
 * `segments[k].offset` (in elements) in `params`, and its gradient at the same offset in `grads`.
 * Both need STORAGE usage; reading parameters back also needs COPY_SRC on `params`.
 */
export interface WebGPUParamGroup extends Partial<Hyperparams> {
  params: GPUBuffer;
  grads: GPUBuffer;
  segments: readonly SegmentInput[];
}

/** One tensor of a list-form group: its own params and grads buffers, from byte 0. */
export interface TensorInput {
  /** Name in the state file; default: the tensor's index over all groups ("0", "1", ...), as in PyTorch. */
  name?: string;
  /** The tensor's parameters from byte 0: STORAGE usage (and COPY_SRC to read them back). */
  params: GPUBuffer;
  /** Its gradient from byte 0: STORAGE usage (and COPY_SRC for the value in a non-finite error). */
  grads: GPUBuffer;
  /** Element count. */
  elements: number;
  /** Shape, checked against state files; default: [elements]. Its product must be `elements`. */
  shape?: number[];
}

/**
 * A parameter group given as a list of tensors, each in its own buffers (the list form). Each
 * tensor is its own binding window, so a step costs one dispatch per tensor (per binding window of
 * a tensor beyond maxStorageBufferBindingSize); the flat form (WebGPUParamGroup) is the
 * one-dispatch-per-group path. Everything else (coefficients, flags, the non-finite check, state
 * files) is the same: the tensors are laid out in the group's momentum buffer as if in flat storage.
 */
export interface WebGPUTensorListGroup extends Partial<Hyperparams> {
  tensors: readonly TensorInput[];
}

/** A group in either form: flat storage with a segment table, or a list of tensors with their own buffers. */
export type WebGPUGroupInput = WebGPUParamGroup | WebGPUTensorListGroup;

export interface WebGPUAccSGDOptions {
  /** Precision of parameters and gradients in storage; arithmetic and momentum buffers are float32. Default 'float32'. */
  storage?: StorageType;
  /** Label prefix of the GPU objects the optimizer creates. */
  label?: string;
  /** Caps binding windows below the device's maxStorageBufferBindingSize (for tests and tuning). */
  maxBindingBytes?: number;
  /** Caps workgroups per dispatch dimension below the device's limit (for tests). */
  maxWorkgroupsPerDimension?: number;
  /**
   * Workgroups per dispatch (the kernel's grid-stride loop covers any window with any count).
   * Default: 64 on a CPU (fallback) adapter such as SwiftShader, 4,096 on a GPU; see
   * defaultWorkgroupsPerDispatch.
   */
  workgroupsPerDispatch?: number;
  /**
   * What a step does with a non-finite (NaN or infinite) gradient in a tensor that has a gradient
   * this step (SPEC §2 rule 6). 'error' (default): step() rejects with AccSGDGradientError naming
   * the tensor and element; 'skip-step': step() resolves { applied: false, reason } ; either way
   * nothing changes (parameters, buffers, step counts). 'allow': computed with, no check.
   *
   * The check runs on the GPU: a scan dispatch per binding window before the update dispatches, in
   * the same pass, writes a status word the update kernel is predicated on, so a rejected step
   * never touches anything. Its cost: one extra read of every active gradient (4 bytes per float32
   * element on top of the update's 20) and a 4-byte-per-group status read back per step, which
   * makes step() wait for the GPU to finish the step before it resolves. 'allow' skips both.
   */
  nonFinite?: NonFinitePolicy;
}

/**
 * Which tensors have a gradient this step: booleans aligned with `paramNames`, or a record keyed
 * by name (missing or false: no gradient). Omitted: every tensor has one.
 */
export type GradientPresence = readonly boolean[] | Readonly<Record<string, boolean | null | undefined>>;

export interface StepOptions {
  /** Timestamp writes for the compute pass that holds the step's dispatches (benchmarks). */
  timestampWrites?: GPUComputePassTimestampWrites;
}
