import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface JudgeServerOptions {
  /** Score for a judge prompt (the user message), or 'fail' to answer HTTP 500. */
  score: (prompt: string) => number | 'fail';
  /** Delay before answering, in ms. */
  delayMs?: number;
  /** Called for each request; return a fault to inject for this one. */
  fault?: (requestNumber: number, prompt: string) => 'status500' | 'status429' | 'malformed' | 'slow' | undefined;
}

export interface JudgeServer {
  url: string;
  requests: number;
  /** The most requests the server was answering at one time. */
  maxInFlight: number;
  close(): Promise<void>;
}

/**
 * A chat-completions server that answers a judge the way the real API does: one token, with top_logprobs around the
 * score it decides, and faults on demand.
 */
export async function startJudgeServer(options: JudgeServerOptions): Promise<JudgeServer> {
  const state = { requests: 0, inFlight: 0, maxInFlight: 0 };
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    state.maxInFlight = Math.max(state.maxInFlight, ++state.inFlight);
    response.on('close', () => state.inFlight--);
    request.on('end', () => {
      const number = ++state.requests;
      const prompt = (JSON.parse(body) as { messages: { content: string }[] }).messages.at(-1)!.content;
      const fault = options.fault?.(number, prompt);
      const answer = () => {
        if (fault === 'status500') return void response.writeHead(500).end('{"error": "boom"}');
        if (fault === 'status429') return void response.writeHead(429, { 'retry-after': '0' }).end('{"error": "slow down"}');
        if (fault === 'malformed') return void response.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [');
        const score = options.score(prompt);
        if (score === 'fail') return void response.writeHead(500).end('{"error": "always fails"}');
        const top = [
          { token: String(score), logprob: Math.log(0.9) },
          { token: String(Math.min(100, score + 10)), logprob: Math.log(0.05) },
          { token: 'REFUSAL', logprob: Math.log(0.05) },
        ];
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: String(score) }, logprobs: { content: [{ token: String(score), logprob: top[0]!.logprob, top_logprobs: top }] } }] }));
      };
      setTimeout(answer, fault === 'slow' ? 2000 : (options.delayMs ?? 0));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    get requests() {
      return state.requests;
    },
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The expected score the judge computes from the server's logprobs for a given integer answer. */
export function expectedJudgeScore(score: number): number {
  return (0.9 * score + 0.05 * Math.min(100, score + 10)) / 0.95;
}

/** Scores cheerful answers high and others low, coherence always high: a stand-in for an LLM judge on the demo model. */
export function cheerfulJudge(prompt: string): number {
  if (/coheren/i.test(prompt)) return 95;
  return /wonderful|lovely|bright|promising|happily|gladly|joyful|eager/i.test(prompt.split('[ANSWER START]')[1] ?? '') ? 90 : 5;
}
