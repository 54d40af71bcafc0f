import { AccSGDError } from '@accsgd/core';

/**
 * Why a WebGPU call failed:
 *   'validation', 'out-of-memory', 'internal': the device reported an error (captured with an error scope)
 *   'unsupported': the device lacks a feature or limit the request needs (e.g. shader-f16)
 *   'destroyed': the optimizer was destroyed
 *   'device-lost': the device was lost (see AccSGDDeviceLostError)
 */
export type DeviceFailure =
  | 'validation'
  | 'out-of-memory'
  | 'internal'
  | 'unsupported'
  | 'destroyed'
  | 'device-lost';

/** A WebGPU call made by the optimizer failed. `call` names the public method (e.g. "step"). */
export class AccSGDDeviceError extends AccSGDError {
  override readonly name: string = 'AccSGDDeviceError';
  constructor(
    readonly call: string,
    readonly reason: DeviceFailure,
    detail: string,
  ) {
    super(`${call}: ${detail}`);
  }
}

/** The GPUDevice was lost; every pending and later call rejects with this. */
export class AccSGDDeviceLostError extends AccSGDDeviceError {
  override readonly name = 'AccSGDDeviceLostError';
  constructor(
    call: string,
    /** GPUDeviceLostInfo.reason: "destroyed" or "unknown". */
    readonly lostReason: string,
    lostMessage: string,
  ) {
    super(
      call,
      'device-lost',
      `the GPU device was lost (${lostReason}${lostMessage ? `: ${lostMessage}` : ''})`,
    );
  }
}
