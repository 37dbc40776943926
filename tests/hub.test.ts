import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import {
  SUPPORTED_DTYPES,
  availableDtypes,
  dtypeFileSuffix,
  formatProgress,
  pullModel,
  selectFilesForDtype,
  type PullOptions,
  type PullProgress,
  type RepoFile,
} from '../src/hub/index.js';
import { ProgressTracker } from '../src/hub/progress.js';

const REPO = 'test-org/tiny-model';
const TOKEN = 'hf_SuperSecretTestToken123';
const FP16_DATA = 'onnx/model_fp16.onnx_data';

interface FakeFile {
  content: Buffer;
  lfs: boolean;
}

/** `cutAtByte`: the connection dies once the file's first N bytes are sent, for the first `attempts` requests. `truncateTo`: the server's copy is shorter than the listing says. */
type Fault = { cutAtByte: number; attempts: number } | { truncateTo: number };

interface RecordedRequest {
  pathname: string;
  range: string | undefined;
  authorization: string | undefined;
}

interface FakeHubOptions {
  requiredToken?: string;
  /** Serve redirected LFS files from a second server, i.e. another origin, as the real Hub does. */
  crossOriginCdn?: boolean;
}

class FakeHub {
  readonly requests: RecordedRequest[] = [];
  readonly faults = new Map<string, Fault>();
  ignoreRange = false;
  private readonly attempts = new Map<string, number>();
  private readonly servers: http.Server[] = [];
  origin = '';
  cdnOrigin = '';

  constructor(
    readonly files: ReadonlyMap<string, FakeFile>,
    private readonly options: FakeHubOptions = {},
  ) {}

  async start(): Promise<this> {
    this.origin = await this.listen();
    this.cdnOrigin = this.options.crossOriginCdn ? await this.listen() : this.origin;
    return this;
  }

  async close(): Promise<void> {
    for (const server of this.servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  reset(): void {
    this.requests.length = 0;
    this.faults.clear();
    this.attempts.clear();
    this.ignoreRange = false;
  }

  requestsFor(prefix: string): RecordedRequest[] {
    return this.requests.filter((request) => request.pathname.startsWith(prefix));
  }

  rangesRequested(pathname: string): (string | undefined)[] {
    return this.requests.filter((request) => request.pathname === pathname).map((request) => request.range);
  }

  private async listen(): Promise<string> {
    const server = http.createServer((request, response) => this.handle(request, response));
    this.servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? '/', 'http://x');
    const pathname = decodeURIComponent(url.pathname);
    this.requests.push({ pathname, range: request.headers.range, authorization: request.headers.authorization });
    if (this.requests.length > 500) return void response.writeHead(500).end();
    if (pathname.startsWith('/cdn/')) return this.serveFile(pathname.slice('/cdn/'.length), request, response);
    if (this.options.requiredToken !== undefined && request.headers.authorization !== `Bearer ${this.options.requiredToken}`) {
      return void response.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Invalid credentials in Authorization header"}');
    }
    if (pathname === `/api/models/${REPO}/tree/main`) return this.serveTree(url, response);
    const resolvePrefix = `/${REPO}/resolve/main/`;
    if (pathname.startsWith(resolvePrefix)) {
      const filePath = pathname.slice(resolvePrefix.length);
      const file = this.files.get(filePath);
      if (!file) return void response.writeHead(404).end('Entry not found');
      if (file.lfs) return void response.writeHead(302, { location: `${this.cdnOrigin}/cdn/${filePath}` }).end();
      return this.serveFile(filePath, request, response);
    }
    response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Repository not found"}');
  }

  /** Two pages, the first pointing at the second through a Link header; LFS entries list the pointer size as `size`. */
  private serveTree(url: URL, response: http.ServerResponse): void {
    const entries: object[] = [{ type: 'directory', path: 'onnx', size: 0, oid: 'd0' }];
    for (const [filePath, file] of this.files) {
      entries.push(
        file.lfs
          ? { type: 'file', path: filePath, size: 134, oid: 'p0', lfs: { oid: 'sha0', size: file.content.length, pointerSize: 134 } }
          : { type: 'file', path: filePath, size: file.content.length, oid: 'b0' },
      );
    }
    const half = Math.ceil(entries.length / 2);
    const secondPage = url.searchParams.get('cursor') === 'page2';
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
    if (!secondPage) headers['link'] = `<${this.origin}/api/models/${REPO}/tree/main?recursive=true&cursor=page2>; rel="next"`;
    response.writeHead(200, headers).end(JSON.stringify(secondPage ? entries.slice(half) : entries.slice(0, half)));
  }

  private serveFile(filePath: string, request: http.IncomingMessage, response: http.ServerResponse): void {
    const file = this.files.get(filePath);
    if (!file) return void response.writeHead(404).end();
    const attempt = (this.attempts.get(filePath) ?? 0) + 1;
    this.attempts.set(filePath, attempt);
    const fault = this.faults.get(filePath);
    const content = fault && 'truncateTo' in fault ? file.content.subarray(0, fault.truncateTo) : file.content;

    const rangeStart = this.ignoreRange ? undefined : /^bytes=(\d+)-$/.exec(request.headers.range ?? '')?.[1];
    const start = rangeStart === undefined ? 0 : Number(rangeStart);
    if (start >= content.length && rangeStart !== undefined) {
      return void response.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
    }
    const headers: http.OutgoingHttpHeaders = { 'content-length': content.length - start, 'content-type': 'application/octet-stream' };
    if (rangeStart !== undefined) headers['content-range'] = `bytes ${start}-${content.length - 1}/${content.length}`;
    response.writeHead(rangeStart === undefined ? 200 : 206, headers);

    if (fault && 'cutAtByte' in fault && attempt <= fault.attempts) {
      // Let the client read what was sent before the connection dies, as after a real network drop.
      response.write(content.subarray(start, Math.max(start, fault.cutAtByte)), () => setTimeout(() => response.destroy(), 30));
      return;
    }
    response.end(content.subarray(start));
  }
}

function text(value: unknown): FakeFile {
  return { content: Buffer.from(JSON.stringify(value)), lfs: false };
}

function binary(size: number): FakeFile {
  return { content: randomBytes(size), lfs: true };
}

const FILES = new Map<string, FakeFile>([
  ['.gitattributes', { content: Buffer.from('*.onnx filter=lfs\n'), lfs: false }],
  ['README.md', { content: Buffer.from('# tiny\n'), lfs: false }],
  ['config.json', text({ model_type: 'qwen2', hidden_size: 8 })],
  ['generation_config.json', text({ do_sample: false })],
  ['tokenizer.json', text({ version: '1.0', model: { type: 'BPE' } })],
  ['tokenizer_config.json', text({ tokenizer_class: 'PreTrainedTokenizerFast' })],
  ['special_tokens_map.json', text({ eos_token: '<|im_end|>' })],
  ['onnx/model.onnx', binary(3_000)],
  ['onnx/model.onnx_data', binary(40_000)],
  ['onnx/model_fp16.onnx', binary(2_000)],
  [FP16_DATA, binary(300_000)],
  ['onnx/model_fp16.onnx_data_1', binary(20_000)],
  ['onnx/model_q4.onnx', binary(1_000)],
]);

const FP16_SELECTION = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'onnx/model_fp16.onnx',
  FP16_DATA,
  'onnx/model_fp16.onnx_data_1',
];

const HF_ENV = ['HF_ENDPOINT', 'HF_TOKEN', 'HF_ACCESS_TOKEN'] as const;

let hub: FakeHub;
let destDir: string;
let savedEnv: Record<string, string | undefined>;

function pull(overrides: Partial<PullOptions> = {}) {
  return pullModel({ repo: REPO, destDir, endpoint: hub.origin, dtype: 'fp16', retryBaseDelayMs: 1, ...overrides });
}

function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((entry) => fs.statSync(path.join(dir, entry)).isFile())
    .map((entry) => entry.split(path.sep).join('/'))
    .sort();
}

function expectSameBytes(filePath: string): void {
  expect(fs.readFileSync(path.join(destDir, filePath)).equals(FILES.get(filePath)!.content), filePath).toBe(true);
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof Error)) throw new Error('expected the promise to reject');
  return error;
}

beforeAll(async () => {
  hub = await new FakeHub(FILES).start();
});

afterAll(async () => {
  await hub.close();
});

beforeEach(() => {
  savedEnv = Object.fromEntries(HF_ENV.map((name) => [name, process.env[name]]));
  for (const name of HF_ENV) delete process.env[name];
  destDir = fs.mkdtempSync(path.join(os.tmpdir(), 'persona-hub-'));
  hub.reset();
});

afterEach(() => {
  for (const name of HF_ENV) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
  fs.rmSync(destDir, { recursive: true, force: true });
});

describe('file selection', () => {
  const listing = (...paths: string[]): RepoFile[] => paths.map((p) => ({ path: p, size: 1 }));
  const base = ['config.json', 'tokenizer.json', 'merges.txt', 'README.md'];

  it('maps every supported dtype to its onnx-community suffix', () => {
    expect(SUPPORTED_DTYPES).toEqual(['fp32', 'fp16', 'q8', 'q4', 'q4f16']);
    expect(dtypeFileSuffix).toEqual({ fp32: '', fp16: '_fp16', q8: '_quantized', q4: '_q4', q4f16: '_q4f16' });
  });

  it('picks metadata, the graph and its data shards in shard order, and nothing of other dtypes', () => {
    const files = listing(
      ...base,
      'onnx/model.onnx',
      'onnx/model.onnx_data',
      'onnx/model_quantized.onnx',
      'onnx/model_quantized.onnx_data_10',
      'onnx/model_quantized.onnx_data_2',
      'onnx/model_quantized.onnx_data',
      'onnx/model_quantized.onnx_data_x',
      'onnx/model_q4f16.onnx',
    );
    expect(selectFilesForDtype(files, 'q8').map((file) => file.path)).toEqual([
      'config.json',
      'tokenizer.json',
      'merges.txt',
      'onnx/model_quantized.onnx',
      'onnx/model_quantized.onnx_data',
      'onnx/model_quantized.onnx_data_2',
      'onnx/model_quantized.onnx_data_10',
    ]);
    expect(selectFilesForDtype(files, 'fp32').map((file) => file.path)).toEqual([...base.slice(0, 3), 'onnx/model.onnx', 'onnx/model.onnx_data']);
    expect(availableDtypes(files)).toEqual(['fp32', 'q8', 'q4f16']);
  });

  it('requires config.json and tokenizer.json', () => {
    expect(() => selectFilesForDtype(listing('tokenizer.json', 'onnx/model.onnx'), 'fp32')).toThrow(/no config\.json/);
    expect(() => selectFilesForDtype(listing('config.json', 'onnx/model.onnx'), 'fp32')).toThrow(/no tokenizer\.json/);
  });

  it('names the dtypes a repository offers when the requested one is missing', () => {
    const error = (() => {
      try {
        selectFilesForDtype(listing(...base, 'onnx/model.onnx', 'onnx/model_q4.onnx'), 'fp16', 'org/x@main');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toBe('org/x@main has no fp16 model (onnx/model_fp16.onnx); available dtypes: fp32, q4');
  });
});

describe('progress', () => {
  const sample: PullProgress = {
    file: 'onnx/model.onnx',
    fileBytesDone: 12_300_000,
    fileBytesTotal: 45_600_000,
    bytesDone: 0,
    bytesTotal: 0,
    filesDone: 3,
    filesTotal: 7,
    bytesPerSecond: 8_100_000,
    etaSeconds: 3.2,
  };

  it('formats one line for the terminal', () => {
    expect(formatProgress(sample)).toBe('onnx/model.onnx 12.3/45.6 MB · 3/7 files · 8.1 MB/s · ETA 4s');
    expect(formatProgress({ ...sample, file: 'config.json', fileBytesDone: 512, fileBytesTotal: 512, bytesPerSecond: 0, etaSeconds: null })).toBe(
      'config.json 512/512 B · 3/7 files · 0 B/s · ETA ?',
    );
    expect(formatProgress({ ...sample, etaSeconds: 3725 })).toContain('ETA 1h02m');
  });

  it('reports at most every 200 ms, and always at a file end', () => {
    const reports: PullProgress[] = [];
    const tracker = new ProgressTracker(1, 1000, (progress) => reports.push(progress));
    tracker.startFile('a.bin', 1000);
    for (let i = 0; i < 1000; i++) tracker.addTransferred(1);
    tracker.finishFile();
    expect(reports).toHaveLength(2);
    expect(reports[1]).toMatchObject({ file: 'a.bin', fileBytesDone: 1000, bytesDone: 1000, filesDone: 1, etaSeconds: 0 });
  });
});

describe('pullModel against a local fake hub', () => {
  it('downloads exactly the fp16 selection, byte for byte, across two listing pages', async () => {
    const reports: PullProgress[] = [];
    const summary = await pull({ onProgress: (progress) => reports.push(progress) });

    expect(filesUnder(destDir)).toEqual([...FP16_SELECTION].sort());
    for (const filePath of FP16_SELECTION) expectSameBytes(filePath);
    expect(hub.requestsFor('/api/').map((request) => request.pathname)).toHaveLength(2);
    expect(hub.requestsFor('/cdn/')).toHaveLength(3);

    const bytesTotal = FP16_SELECTION.reduce((sum, filePath) => sum + FILES.get(filePath)!.content.length, 0);
    expect(summary).toMatchObject({ repo: REPO, revision: 'main', dtype: 'fp16', destDir, skipped: [], bytesTransferred: bytesTotal, bytesTotal });
    expect(summary.downloaded).toEqual(FP16_SELECTION);
    expect(reports.at(-1)).toMatchObject({ bytesDone: bytesTotal, bytesTotal, filesDone: 8, filesTotal: 8, etaSeconds: 0 });
    expect(reports.filter((progress) => progress.fileBytesDone === progress.fileBytesTotal).map((progress) => progress.file)).toEqual(
      expect.arrayContaining(FP16_SELECTION),
    );
  });

  it('retries a dropped connection and resumes with a Range request', async () => {
    hub.faults.set(FP16_DATA, { cutAtByte: 100_000, attempts: 1 });
    const summary = await pull();

    expect(hub.rangesRequested(`/cdn/${FP16_DATA}`)).toEqual([undefined, 'bytes=100000-']);
    expectSameBytes(FP16_DATA);
    expect(filesUnder(destDir)).toEqual([...FP16_SELECTION].sort());
    expect(summary.downloaded).toEqual(FP16_SELECTION);
  });

  it('resumes a .part file left by an earlier run instead of starting over', async () => {
    const partPath = path.join(destDir, `${FP16_DATA}.part`);
    fs.mkdirSync(path.dirname(partPath), { recursive: true });
    fs.writeFileSync(partPath, FILES.get(FP16_DATA)!.content.subarray(0, 123_456));

    const summary = await pull();

    expect(hub.rangesRequested(`/cdn/${FP16_DATA}`)).toEqual(['bytes=123456-']);
    expectSameBytes(FP16_DATA);
    expect(fs.existsSync(partPath)).toBe(false);
    expect(summary.bytesTransferred).toBe(summary.bytesTotal - 123_456);
  });

  it('starts over when the server ignores the Range header', async () => {
    hub.ignoreRange = true;
    const partPath = path.join(destDir, `${FP16_DATA}.part`);
    fs.mkdirSync(path.dirname(partPath), { recursive: true });
    fs.writeFileSync(partPath, Buffer.alloc(5_000, 7));

    await pull();

    expect(hub.rangesRequested(`/cdn/${FP16_DATA}`)).toEqual(['bytes=5000-']);
    expectSameBytes(FP16_DATA);
  });

  it('fails with the file and both sizes when the server has fewer bytes than listed, leaving nothing behind', async () => {
    hub.faults.set(FP16_DATA, { truncateTo: 250_000 });
    const error = await rejection(pull());

    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toBe(`${FP16_DATA}: size mismatch, the listing says 300000 bytes but the server sends 250000`);
    expect(fs.existsSync(path.join(destDir, FP16_DATA))).toBe(false);
    expect(fs.existsSync(path.join(destDir, `${FP16_DATA}.part`))).toBe(false);
  });

  it('gives up after the configured retries when every attempt is cut short, keeping the .part for a later run', async () => {
    hub.faults.set(FP16_DATA, { cutAtByte: 50_000, attempts: Infinity });
    const error = await rejection(pull({ retries: 2 }));

    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toMatch(new RegExp(`^downloading ${FP16_DATA}: connection lost at byte 50000 of 300000: .*\\(gave up after 3 attempts\\)$`));
    expect(hub.rangesRequested(`/cdn/${FP16_DATA}`)).toHaveLength(3);
    expect(fs.existsSync(path.join(destDir, FP16_DATA))).toBe(false);
    expect(fs.statSync(path.join(destDir, `${FP16_DATA}.part`)).size).toBe(50_000);
  });

  it('skips files already complete on a second pull and replaces one of the wrong size', async () => {
    await pull();
    fs.truncateSync(path.join(destDir, 'onnx/model_fp16.onnx'), 10);
    hub.requests.length = 0;

    const summary = await pull();

    expect(summary.downloaded).toEqual(['onnx/model_fp16.onnx']);
    expect(summary.skipped).toEqual(FP16_SELECTION.filter((filePath) => filePath !== 'onnx/model_fp16.onnx'));
    expect(hub.requestsFor(`/${REPO}/resolve/`).map((request) => request.pathname)).toEqual([`/${REPO}/resolve/main/onnx/model_fp16.onnx`]);
    expectSameBytes('onnx/model_fp16.onnx');
  });

  it('reports a dtype the repository lacks with the dtypes it has', async () => {
    const error = await rejection(pull({ dtype: 'q8' }));
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toMatch(/has no q8 model \(onnx\/model_quantized\.onnx\); available dtypes: fp32, fp16, q4$/);
    await expect(pull({ dtype: 'int3' })).rejects.toThrow(/unknown dtype "int3"; expected one of fp32, fp16, q8, q4, q4f16/);
  });

  it('rejects malformed repository ids before any request', async () => {
    for (const repo of ['tiny-model', 'a/b/c', 'org/..', 'org/na me', 'org/name?x=1', '']) {
      await expect(pull({ repo }), repo).rejects.toThrow(UserError);
    }
    expect(hub.requests).toHaveLength(0);
  });

  it('says when the repository or revision does not exist', async () => {
    await expect(pull({ repo: 'test-org/missing' })).rejects.toThrow(/^repository or revision not found: test-org\/missing@main/);
    await expect(pull({ revision: 'v9' })).rejects.toThrow(/^repository or revision not found: test-org\/tiny-model@v9/);
  });

  it('honours HF_ENDPOINT, trailing slash included', async () => {
    process.env['HF_ENDPOINT'] = `${hub.origin}/`;
    const summary = await pullModel({ repo: REPO, destDir, dtype: 'q4', retryBaseDelayMs: 1 });
    expect(summary.downloaded).toContain('onnx/model_q4.onnx');
    expectSameBytes('onnx/model_q4.onnx');
    expect(hub.requestsFor('/api/')[0]?.pathname).toBe(`/api/models/${REPO}/tree/main`);
  });
});

describe('pullModel with a private repository', () => {
  let privateHub: FakeHub;

  beforeAll(async () => {
    privateHub = await new FakeHub(FILES, { requiredToken: TOKEN, crossOriginCdn: true }).start();
  });

  afterAll(async () => {
    await privateHub.close();
  });

  it('asks for HF_TOKEN when none is set, in one line', async () => {
    const error = await rejection(pullModel({ repo: REPO, destDir, endpoint: privateHub.origin }));
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toContain('HF_TOKEN');
    expect(error.message).toContain('401');
    expect(error.message).not.toContain('\n');
  });

  it('sends the token from HF_TOKEN to the hub only, never to the CDN, and never shows it', async () => {
    process.env['HF_TOKEN'] = TOKEN;
    const lines: string[] = [];
    const summary = await pullModel({
      repo: REPO,
      destDir,
      endpoint: privateHub.origin,
      dtype: 'fp16',
      retryBaseDelayMs: 1,
      onProgress: (progress) => lines.push(formatProgress(progress), JSON.stringify(progress)),
    });

    expect(summary.downloaded).toEqual(FP16_SELECTION);
    expectSameBytes(FP16_DATA);
    const cdnRequests = privateHub.requestsFor('/cdn/');
    expect(cdnRequests).toHaveLength(3);
    expect(cdnRequests.every((request) => request.authorization === undefined)).toBe(true);
    expect(privateHub.requestsFor(`/${REPO}/resolve/`).every((request) => request.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('\n')).not.toContain(TOKEN);
    expect(JSON.stringify(summary)).not.toContain(TOKEN);
  });

  it('keeps a rejected token out of the error message', async () => {
    const wrongToken = `${TOKEN}-wrong`;
    const error = await rejection(pullModel({ repo: REPO, destDir, endpoint: privateHub.origin, token: wrongToken }));
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toContain('HF_TOKEN');
    expect(error.message).not.toContain(TOKEN);
    expect(error.stack ?? '').not.toContain(TOKEN);
  });
});
