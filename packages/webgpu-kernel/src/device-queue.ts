import { AccSGDConfigError, OrderedCalls } from '@accsgd/core';
import { align } from './binding-windows.js';
import { AccSGDDeviceError, AccSGDDeviceLostError } from './errors.js';
import { GPUBufferUsageFlag, GPUMapModeFlag } from './validation.js';

const READBACK_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * The optimizer's calls on one device, in the order they are made (OrderedCalls), each failing
 * fast once the optimizer is destroyed or the device lost; GPU work inside error scopes, raised as
 * AccSGDDeviceError naming the call; and waits that reject with AccSGDDeviceLostError when the
 * device is lost first.
 */
export class DeviceQueue {
  private readonly calls = new OrderedCalls();
  private lostInfo: GPUDeviceLostInfo | null = null;
  private readonly lost: Promise<GPUDeviceLostInfo>;
  destroyed = false;

  constructor(
    readonly device: GPUDevice,
    private readonly label: string,
  ) {
    this.lost = device.lost.then((info) => {
      this.lostInfo = info;
      return info;
    });
  }

  /** Runs `fn` after every call made before it has settled, failing fast when destroyed or lost. */
  run<T>(call: string, fn: () => Promise<T>): Promise<T> {
    return this.calls.run(() => {
      if (this.destroyed) throw new AccSGDDeviceError(call, 'destroyed', 'the optimizer was destroyed');
      if (this.lostInfo) throw new AccSGDDeviceLostError(call, this.lostInfo.reason, this.lostInfo.message);
      return fn();
    });
  }

  /**
   * Runs `body` inside validation, out-of-memory and internal error scopes; raises the first error
   * as AccSGDDeviceError naming `call`.
   */
  async checked<T>(call: string, body: () => T): Promise<T> {
    const device = this.device;
    device.pushErrorScope('internal');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown;
    try {
      result = body();
    } catch (error) {
      thrown = error;
    }
    const scopes = [device.popErrorScope(), device.popErrorScope(), device.popErrorScope()];
    const [validation, outOfMemory, internal] = await this.guard(call, Promise.all(scopes));
    const error = validation ?? outOfMemory ?? internal;
    if (error) {
      const reason = validation ? 'validation' : outOfMemory ? 'out-of-memory' : 'internal';
      throw new AccSGDDeviceError(call, reason, `WebGPU ${reason} error: ${error.message}`);
    }
    if (thrown !== undefined) {
      if (thrown instanceof AccSGDDeviceError || thrown instanceof AccSGDConfigError) throw thrown;
      throw new AccSGDDeviceError(
        call,
        'validation',
        `WebGPU call threw: ${(thrown as Error)?.message ?? String(thrown)}`,
      );
    }
    return result as T;
  }

  /** Rejects with AccSGDDeviceLostError when the device is lost before `promise` settles. */
  guard<T>(call: string, promise: Promise<T>): Promise<T> {
    const lost = this.lost.then((info): never => {
      throw new AccSGDDeviceLostError(call, info.reason, info.message);
    });
    return Promise.race([promise, lost]).catch((error: unknown) => {
      if (this.lostInfo && !(error instanceof AccSGDDeviceLostError)) {
        throw new AccSGDDeviceLostError(call, this.lostInfo.reason, this.lostInfo.message);
      }
      if (error instanceof AccSGDDeviceError) throw error;
      throw new AccSGDDeviceError(call, 'validation', (error as Error)?.message ?? String(error));
    });
  }

  /** `byteLength` bytes of `source` from `byteOffset`, through MAP_READ staging buffers of at most 64 MiB. */
  async readBytes(
    call: string,
    source: GPUBuffer,
    byteOffset: number,
    byteLength: number,
  ): Promise<Uint8Array> {
    const start = byteOffset - (byteOffset % 4);
    const skip = byteOffset - start;
    const total = align(skip + byteLength, 4);
    const gathered = new Uint8Array(total);
    for (let done = 0; done < total; done += READBACK_CHUNK_BYTES) {
      const length = Math.min(READBACK_CHUNK_BYTES, total - done);
      const staging = await this.checked(call, () =>
        this.device.createBuffer({
          label: `${this.label} readback`,
          size: length,
          usage: GPUBufferUsageFlag.MAP_READ | GPUBufferUsageFlag.COPY_DST,
        }),
      );
      try {
        await this.checked(call, () => {
          const encoder = this.device.createCommandEncoder({ label: `${this.label} readback` });
          encoder.copyBufferToBuffer(source, start + done, staging, 0, length);
          this.device.queue.submit([encoder.finish()]);
        });
        await this.guard(call, staging.mapAsync(GPUMapModeFlag.READ));
        gathered.set(new Uint8Array(staging.getMappedRange()), done);
        staging.unmap();
      } finally {
        staging.destroy();
      }
    }
    return gathered.subarray(skip, skip + byteLength);
  }
}
