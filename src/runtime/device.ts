import { UserError } from '../errors.js';

export type Device = 'cpu' | 'cuda';
export const devices: readonly Device[] = ['cpu', 'cuda'];

export const CUDA_INSTALL_HINT =
  'the CUDA execution provider is not installed: on a Linux x64 machine with CUDA 12 and cuDNN 9, run `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (see README, "GPU")';

export function parseDevice(value: string): Device {
  if ((devices as readonly string[]).includes(value)) return value as Device;
  throw new UserError(`unknown device ${value}: use ${devices.join(' or ')}`);
}

export function executionProviders(device: Device): string[] {
  return device === 'cuda' ? ['cuda'] : ['cpu'];
}

/** Turns onnxruntime's "cannot load the provider library" failures into the install hint. */
export function explainSessionError(error: unknown, device: Device): never {
  const message = error instanceof Error ? error.message : String(error);
  if (device === 'cuda' && /providers_(shared|cuda)|libcudart|libcublas|libcudnn|CUDA/i.test(message)) {
    throw new UserError(`${CUDA_INSTALL_HINT} (onnxruntime said: ${message.split('\n')[0]})`);
  }
  throw new UserError(`onnxruntime could not load the model: ${message.split('\n')[0]}`);
}
