import { UserError } from '../errors.js';

export const SUPPORTED_DTYPES = ['fp32', 'fp16', 'q8', 'q4', 'q4f16'] as const;
export type ModelDtype = (typeof SUPPORTED_DTYPES)[number];

/** Suffix of `onnx/model{suffix}.onnx` for each dtype in the onnx-community layout that transformers.js loads. */
export const dtypeFileSuffix: Readonly<Record<ModelDtype, string>> = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  q4: '_q4',
  q4f16: '_q4f16',
};

/** A file in a repository listing; `size` is the size of the real content (the LFS object, not its pointer). */
export interface RepoFile {
  path: string;
  size: number;
}

const METADATA_FILES: readonly { path: string; required: boolean }[] = [
  { path: 'config.json', required: true },
  { path: 'generation_config.json', required: false },
  { path: 'tokenizer.json', required: true },
  { path: 'tokenizer_config.json', required: false },
  { path: 'special_tokens_map.json', required: false },
  { path: 'chat_template.jinja', required: false },
  { path: 'vocab.json', required: false },
  { path: 'merges.txt', required: false },
];

export function isModelDtype(value: string): value is ModelDtype {
  return (SUPPORTED_DTYPES as readonly string[]).includes(value);
}

export function parseDtype(value: string): ModelDtype {
  if (!isModelDtype(value)) throw new UserError(`unknown dtype "${value}"; expected one of ${SUPPORTED_DTYPES.join(', ')}`);
  return value;
}

export function graphFilePath(dtype: ModelDtype): string {
  return `onnx/model${dtypeFileSuffix[dtype]}.onnx`;
}

/** The dtypes whose graph file is in the listing, in SUPPORTED_DTYPES order. */
export function availableDtypes(files: readonly RepoFile[]): ModelDtype[] {
  const paths = new Set(files.map((file) => file.path));
  return SUPPORTED_DTYPES.filter((dtype) => paths.has(graphFilePath(dtype)));
}

/**
 * The files transformers.js needs to run the model at `dtype`: metadata and tokenizer files first (small, so a broken
 * repository fails fast), then the graph, then its external-data shards in shard order.
 */
export function selectFilesForDtype(files: readonly RepoFile[], dtype: ModelDtype, repoLabel = 'the repository'): RepoFile[] {
  const byPath = new Map(files.map((file) => [file.path, file]));
  const missing = METADATA_FILES.filter((entry) => entry.required && !byPath.has(entry.path)).map((entry) => entry.path);
  if (missing.length > 0) throw new UserError(`${repoLabel} is not a transformers.js model repository: it has no ${missing.join(' or ')}`);
  const metadata = METADATA_FILES.flatMap((entry) => byPath.get(entry.path) ?? []);

  const graph = byPath.get(graphFilePath(dtype));
  if (!graph) {
    const offered = availableDtypes(files);
    const detail = offered.length > 0 ? `available dtypes: ${offered.join(', ')}` : 'it has no onnx/model*.onnx graph for any supported dtype';
    throw new UserError(`${repoLabel} has no ${dtype} model (${graphFilePath(dtype)}); ${detail}`);
  }
  return [...metadata, graph, ...externalDataFiles(files, dtype)];
}

function externalDataFiles(files: readonly RepoFile[], dtype: ModelDtype): RepoFile[] {
  const pattern = new RegExp(`^onnx/model${dtypeFileSuffix[dtype]}\\.onnx_data(?:_(\\d+))?$`);
  return files
    .flatMap((file) => {
      const match = pattern.exec(file.path);
      return match ? [{ file, shard: Number(match[1] ?? 0) }] : [];
    })
    .sort((a, b) => a.shard - b.shard)
    .map((entry) => entry.file);
}
