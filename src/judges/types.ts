/**
 * Contracts shared by the judges and everything that calls an LLM (judging, writing trait files).
 */

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** One candidate token with its log-probability, as chat-completions `top_logprobs` returns them. */
export interface TokenLogprob {
  token: string;
  logprob: number;
}

export interface CompletionRequest {
  messages: ChatTurn[];
  maxTokens: number;
  temperature?: number;
  /** Ask for the top-N log-probabilities of the first generated token (0 = none). */
  topLogprobs?: number;
  seed?: number;
}

export interface CompletionResult {
  text: string;
  /** Top log-probabilities at the first generated position, when requested. */
  firstTokenLogprobs?: TokenLogprob[];
}

/** Anything that completes a chat: an OpenAI-compatible server or a local ONNX model. */
export interface ChatCompletionClient {
  /** A description safe to log and store (never contains a key). */
  readonly label: string;
  complete(request: CompletionRequest): Promise<CompletionResult>;
}

/** What to score: a question, the model's answer, and the prompt template with `{question}` and `{answer}`. */
export interface JudgeRequest {
  question: string;
  answer: string;
  template: string;
}

export interface Judgment {
  /** 0–100, or null when the judge gave no usable score (refusal, probability mass below the floor, failure). */
  score: number | null;
  /** Why the score is null because of a failure (network, malformed reply); absent for a clean null. */
  error?: string;
}

export interface Judge {
  /** The spec it was made from, e.g. `openai:gpt-4.1-mini` (never includes a key). */
  readonly spec: string;
  /** Scores every request; failures are recorded per item, never thrown. */
  score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Judgment[]>;
}
