import { UserError } from '../errors.js';

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const REPO_ID = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;
const MAX_RETRY_DELAY_MS = 30_000;

export interface RetryPolicy {
  retries: number;
  retryBaseDelayMs: number;
}

/** Everything a request to one revision of one repository needs. */
export interface HubSession extends RetryPolicy {
  endpoint: string;
  repo: string;
  revision: string;
  token: string | undefined;
  fetchImpl: typeof fetch;
}

/** A failure worth another attempt: a lost connection, a 5xx or 429, a body that ended early. */
export class TransientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransientError';
  }
}

export function validateRepoId(repo: string): string {
  // "." and ".." pass the character check but would walk the URL (and the caller's models/<repo> folder) upwards.
  if (!REPO_ID.test(repo) || repo.split('/').some((part) => /^\.+$/.test(part))) {
    throw new UserError(`invalid repository id "${repo}": expected org/name using letters, digits, ".", "_" and "-"`);
  }
  return repo;
}

export function resolveEndpoint(endpoint: string | undefined): string {
  const value = endpoint ?? process.env['HF_ENDPOINT'] ?? DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UserError(`hub endpoint "${value}" is not a URL (check HF_ENDPOINT)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`hub endpoint "${value}" is not an http(s) URL (check HF_ENDPOINT)`);
  return value.replace(/\/+$/, '');
}

/** The explicit token, else HF_TOKEN, else HF_ACCESS_TOKEN; an empty string means "send no token". */
export function resolveToken(token: string | undefined): string | undefined {
  const value = (token ?? process.env['HF_TOKEN'] ?? process.env['HF_ACCESS_TOKEN'] ?? '').trim();
  return value === '' ? undefined : value;
}

export function treeUrl(session: HubSession): string {
  return `${session.endpoint}/api/models/${session.repo}/tree/${encodeURIComponent(session.revision)}?recursive=true`;
}

export function resolveUrl(session: HubSession, filePath: string): string {
  const encodedPath = filePath.split('/').map(encodeURIComponent).join('/');
  return `${session.endpoint}/${session.repo}/resolve/${encodeURIComponent(session.revision)}/${encodedPath}`;
}

export function describeRepo(session: HubSession): string {
  return `${session.repo}@${session.revision}`;
}

/**
 * GET with the token attached only for the endpoint's own origin. Redirects (the Hub sends LFS files to a CDN) are
 * followed by fetch, which drops Authorization when a redirect crosses origins, so the token never reaches the CDN.
 */
export async function hubGet(session: HubSession, url: string, what: string, headers: Record<string, string> = {}): Promise<Response> {
  // identity keeps Content-Length equal to the bytes we write, so it can be checked against the listing.
  const requestHeaders: Record<string, string> = { 'accept-encoding': 'identity', ...headers };
  if (session.token !== undefined && new URL(url).origin === new URL(session.endpoint).origin) {
    requestHeaders['authorization'] = `Bearer ${session.token}`;
  }
  try {
    return await session.fetchImpl(url, { headers: requestHeaders, redirect: 'follow' });
  } catch (error) {
    throw new TransientError(`${what}: ${describeNetworkError(error)}`);
  }
}

/** Throws the error a non-2xx response means; `notFound` is the message for a 404. */
export async function checkStatus(session: HubSession, response: Response, what: string, notFound: string): Promise<void> {
  if (response.ok) return;
  await discardBody(response);
  const status = response.status;
  if (status === 401 || status === 403) {
    const advice =
      session.token === undefined
        ? 'the repository may be private, gated or missing; set HF_TOKEN to a token that can read it'
        : 'the token (HF_TOKEN) was not accepted for this repository, the repository does not exist, or it is gated and its terms were not accepted on the website';
    throw new UserError(`${what}: HTTP ${status} from ${session.endpoint}: ${advice}`);
  }
  if (status === 404) throw new UserError(notFound);
  if (status === 429 || status >= 500) throw new TransientError(`${what}: HTTP ${status}`);
  throw new UserError(`${what}: unexpected HTTP ${status} from ${session.endpoint}`);
}

export async function discardBody(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

export function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail ? `${error.message} (${detail})` : error.message;
}

/** Runs `attempt` until it succeeds or fails for a reason other than a TransientError, backing off exponentially. */
export async function withRetries<T>(policy: RetryPolicy, attempt: () => Promise<T>): Promise<T> {
  for (let attempted = 1; ; attempted++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof TransientError)) throw error;
      if (attempted > policy.retries) throw new UserError(`${error.message} (gave up after ${attempted} attempts)`);
      await sleep(Math.min(policy.retryBaseDelayMs * 2 ** (attempted - 1), MAX_RETRY_DELAY_MS));
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
