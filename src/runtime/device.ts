import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { UserError } from '../errors.js';

export type Device = 'cpu' | 'cuda';
export const devices: readonly Device[] = ['cpu', 'cuda'];

export const CUDA_INSTALL_HINT =
  'the CUDA execution provider is not installed: on a Linux x64 machine with CUDA 12 and cuDNN 9, run `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` in the project folder (see README, "GPU")';

export function parseDevice(value: string): Device {
  if ((devices as readonly string[]).includes(value)) return value as Device;
  throw new UserError(`unknown device ${value}: use ${devices.join(' or ')}`);
}

export function executionProviders(device: Device): string[] {
  if (device === 'cuda') requireCudaProvider();
  return device === 'cuda' ? ['cuda'] : ['cpu'];
}

/**
 * onnxruntime-node ships the CPU provider only; the CUDA one is a separate download its install script skips here
 * (.npmrc). Check for the library before onnxruntime tries to load it and logs a native error.
 */
function requireCudaProvider(): void {
  const packageDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const binaryDir = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  if (!fs.existsSync(path.join(binaryDir, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'))) {
    throw new UserError(CUDA_INSTALL_HINT);
  }
}

/** Turns onnxruntime's "cannot load the provider library" failures into the install hint. */
export function explainSessionError(error: unknown, device: Device): never {
  const message = error instanceof Error ? error.message : String(error);
  if (device === 'cuda' && /providers_(shared|cuda)|libcudart|libcublas|libcudnn|CUDA/i.test(message)) {
    throw new UserError(`${CUDA_INSTALL_HINT} (onnxruntime said: ${message.split('\n')[0]})`);
  }
  throw new UserError(`onnxruntime could not load the model: ${message.split('\n')[0]}`);
}
