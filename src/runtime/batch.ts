/**
 * Token layout of a padded batch across prefill and decode steps. Rows keep their own lengths; the attention mask
 * and positions say where each row's tokens are. Left padding puts pads before the prompt; right padding (for
 * GroupQueryAttention graphs) after it, with each row's cache growing from its own length.
 */
export class BatchLayout {
  readonly batch: number;
  readonly promptWidth: number;
  /** Decode steps taken so far. */
  private steps = 0;

  constructor(
    readonly lengths: readonly number[],
    readonly side: 'left' | 'right',
    /** Position id of each row's first token (1 for Gemma 3 exports). */
    readonly positionOffset = 0,
  ) {
    this.batch = lengths.length;
    this.promptWidth = Math.max(...lengths);
  }

  /** Index of the row's token at a padded prefill position, or −1 for padding. */
  prefillTokenIndex(row: number, position: number): number {
    const length = this.lengths[row]!;
    if (this.side === 'left') {
      const index = position - (this.promptWidth - length);
      return index >= 0 ? index : -1;
    }
    return position < length ? position : -1;
  }

  prefill(rows: readonly (readonly number[])[], padId: number): { inputIds: BigInt64Array; attentionMask: BigInt64Array; positionIds: BigInt64Array; lastPositions: number[] } {
    const width = this.promptWidth;
    const inputIds = new BigInt64Array(this.batch * width).fill(BigInt(padId));
    const attentionMask = new BigInt64Array(this.batch * width);
    const positionIds = new BigInt64Array(this.batch * width);
    rows.forEach((tokens, row) => {
      for (let position = 0; position < width; position++) {
        const index = this.prefillTokenIndex(row, position);
        const at = row * width + position;
        if (index >= 0) {
          inputIds[at] = BigInt(tokens[index]!);
          attentionMask[at] = 1n;
          positionIds[at] = BigInt(index + this.positionOffset);
        } else {
          // Padding: Hugging Face gives pads position 1; any value works since they are masked.
          positionIds[at] = 1n;
        }
      }
    });
    const lastPositions = this.lengths.map((length) => (this.side === 'left' ? width - 1 : length - 1));
    return { inputIds, attentionMask, positionIds, lastPositions };
  }

  /** Feeds for one decode step: one new token per row. */
  decode(tokens: readonly number[]): { inputIds: BigInt64Array; attentionMask: BigInt64Array; positionIds: BigInt64Array; totalLength: number } {
    this.steps += 1;
    const total = this.promptWidth + this.steps;
    const attentionMask = new BigInt64Array(this.batch * total);
    const positionIds = new BigInt64Array(this.batch);
    this.lengths.forEach((length, row) => {
      const valid = length + this.steps;
      const start = this.side === 'left' ? total - valid : 0;
      attentionMask.fill(1n, row * total + start, row * total + start + valid);
      positionIds[row] = BigInt(length + this.steps - 1 + this.positionOffset);
    });
    return { inputIds: BigInt64Array.from(tokens, (t) => BigInt(t)), attentionMask, positionIds, totalLength: total };
  }

  /** Index in its row of the token fed at the current decode step. */
  decodeTokenIndex(row: number): number {
    return this.lengths[row]! + this.steps - 1;
  }
}
