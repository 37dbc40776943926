import { UserError } from '../errors.js';
import type { RepoFile } from './selection.js';
import { checkStatus, describeRepo, hubGet, TransientError, treeUrl, withRetries, type HubSession } from './session.js';

/** Guards against a server whose `next` links never end. */
const MAX_PAGES = 10_000;

/** Every file in the revision, following the `Link: <…>; rel="next"` pagination of the tree API. */
export async function listRepoFiles(session: HubSession): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  let url: string | undefined = treeUrl(session);
  for (let page = 0; url !== undefined; page++) {
    if (page === MAX_PAGES) throw new UserError(`listing ${describeRepo(session)} did not end after ${MAX_PAGES} pages`);
    const pageUrl: string = url;
    const result = await withRetries(session, () => fetchTreePage(session, pageUrl));
    files.push(...result.files);
    url = result.next;
  }
  return files;
}

async function fetchTreePage(session: HubSession, url: string): Promise<{ files: RepoFile[]; next: string | undefined }> {
  const what = `listing ${describeRepo(session)}`;
  const response = await hubGet(session, url, what);
  await checkStatus(session, response, what, `repository or revision not found: ${describeRepo(session)} on ${session.endpoint}`);
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new TransientError(`${what}: connection lost (${(error as Error).message})`);
  }
  return { files: parseTreePage(text, what), next: nextPageUrl(response.headers.get('link'), url) };
}

export function parseTreePage(text: string, what: string): RepoFile[] {
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch {
    throw new UserError(`${what}: the hub answered with something that is not JSON`);
  }
  if (!Array.isArray(entries)) throw new UserError(`${what}: expected a JSON array of tree entries`);
  return entries.flatMap((entry: unknown) => {
    const { type, path, size, lfs } = (entry ?? {}) as { type?: unknown; path?: unknown; size?: unknown; lfs?: { size?: unknown } };
    if (type !== 'file') return [];
    const contentSize = lfs?.size ?? size;
    if (typeof path !== 'string' || typeof contentSize !== 'number' || !Number.isSafeInteger(contentSize) || contentSize < 0) {
      throw new UserError(`${what}: malformed tree entry ${JSON.stringify(entry).slice(0, 200)}`);
    }
    return [{ path, size: contentSize }];
  });
}

export function nextPageUrl(linkHeader: string | null, currentUrl: string): string | undefined {
  const match = linkHeader?.match(/<([^>]*)>\s*;\s*rel="?next"?/);
  return match?.[1] === undefined ? undefined : new URL(match[1], currentUrl).href;
}
