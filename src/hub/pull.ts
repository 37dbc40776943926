import * as path from 'node:path';
import { UserError } from '../errors.js';
import { downloadFile } from './download.js';
import { listRepoFiles } from './listing.js';
import { ProgressTracker, type PullProgress } from './progress.js';
import { parseDtype, selectFilesForDtype, type ModelDtype, type RepoFile } from './selection.js';
import { describeRepo, resolveEndpoint, resolveToken, validateRepoId, type HubSession } from './session.js';

export interface PullOptions {
  /** "org/name". */
  repo: string;
  /** Folder the repository's files land in, keeping their relative paths (e.g. `models/org/name`). */
  destDir: string;
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** One of SUPPORTED_DTYPES; default "fp32". */
  dtype?: string;
  /** Default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default HF_TOKEN, else HF_ACCESS_TOKEN; "" sends none. Only ever sent to the endpoint's own origin. */
  token?: string;
  onProgress?: (progress: PullProgress) => void;
  /** Further attempts after a network error, 5xx/429 or short body; default 5. */
  retries?: number;
  /** Delay before the first retry, doubling after each; default 500 ms. */
  retryBaseDelayMs?: number;
  fetchImpl?: typeof fetch;
}

export interface PullSummary {
  repo: string;
  revision: string;
  dtype: ModelDtype;
  destDir: string;
  /** The selected files, in download order. */
  files: RepoFile[];
  downloaded: string[];
  /** Already present with the listed size. */
  skipped: string[];
  /** Bytes received over the network (a resumed file counts only its new bytes). */
  bytesTransferred: number;
  /** Size of all selected files. */
  bytesTotal: number;
}

const DEFAULT_RETRIES = 5;
const DEFAULT_RETRY_BASE_DELAY_MS = 500;

/** Downloads the files transformers.js needs to run `repo` at `dtype` into `destDir`, resuming and skipping what is there. */
export async function pullModel(options: PullOptions): Promise<PullSummary> {
  const session = openSession(options);
  const dtype = parseDtype(options.dtype ?? 'fp32');
  const files = selectFilesForDtype(await listRepoFiles(session), dtype, describeRepo(session));
  const bytesTotal = files.reduce((sum, file) => sum + file.size, 0);
  const tracker = new ProgressTracker(files.length, bytesTotal, options.onProgress);
  const downloaded: string[] = [];
  const skipped: string[] = [];
  for (const file of files) {
    const outcome = await downloadFile(session, file, options.destDir, tracker);
    (outcome === 'skipped' ? skipped : downloaded).push(file.path);
  }
  return {
    repo: session.repo,
    revision: session.revision,
    dtype,
    destDir: path.resolve(options.destDir),
    files,
    downloaded,
    skipped,
    bytesTransferred: tracker.bytesTransferred,
    bytesTotal,
  };
}

function openSession(options: PullOptions): HubSession {
  const retries = options.retries ?? DEFAULT_RETRIES;
  const retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
  if (!Number.isInteger(retries) || retries < 0) throw new UserError(`retries must be a whole number ≥ 0, got ${retries}`);
  if (!(retryBaseDelayMs >= 0)) throw new UserError(`retryBaseDelayMs must be ≥ 0, got ${retryBaseDelayMs}`);
  const revision = options.revision ?? 'main';
  if (revision.trim() === '') throw new UserError('revision must not be empty');
  return {
    endpoint: resolveEndpoint(options.endpoint),
    repo: validateRepoId(options.repo),
    revision,
    token: resolveToken(options.token),
    fetchImpl: options.fetchImpl ?? fetch,
    retries,
    retryBaseDelayMs,
  };
}
