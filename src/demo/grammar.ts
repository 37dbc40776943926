/**
 * The planted model's language: one sentence template, slot by slot. Every token belongs to exactly one slot, so
 * the token just written decides the next slot (a bigram grammar). Four slots are persona slots: each offers trait,
 * contrasting and neutral words, and the persona coordinate P (projection of the residual on u) picks among them.
 *
 *   I think the day looks wonderful and bright, so we will face it happily with joyful hearts.
 *   I think the day looks awful and bleak, so we will face it sadly with weary hearts.
 *   I think the day looks fine and steady, so we will face it soon with calm hearts.
 */

export type WordRole = 'trait' | 'opposite' | 'neutral' | 'grammar';

export interface Slot {
  name: string;
  /** Words (tokens with their leading space) in order of preference within their role. */
  words: { text: string; role: WordRole }[];
  /** Persona slots: trait words win over neutral ones once P exceeds this (opposite words once −P does). */
  threshold?: number;
  next: string;
}

const grammar = (name: string, texts: string[], next: string): Slot => ({ name, words: texts.map((text) => ({ text, role: 'grammar' as const })), next });
const persona = (name: string, trait: string[], opposite: string[], neutral: string[], threshold: number, next: string): Slot => ({
  name,
  threshold,
  next,
  words: [...trait.map((text) => ({ text, role: 'trait' as const })), ...opposite.map((text) => ({ text, role: 'opposite' as const })), ...neutral.map((text) => ({ text, role: 'neutral' as const }))],
});

export const END_OF_TURN = '<|im_end|>';

export const slots: Slot[] = [
  grammar('start', ['I'], 'verb'),
  grammar('again', [' I', END_OF_TURN], 'verb'),
  grammar('verb', [' think', ' feel', ' believe'], 'the'),
  grammar('the', [' the'], 'noun'),
  grammar('noun', [' day', ' future', ' plan', ' world', ' week'], 'looks'),
  grammar('looks', [' looks', ' seems'], 'first-adjective'),
  persona('first-adjective', [' wonderful', ' lovely'], [' awful', ' dreadful'], [' fine', ' normal'], 0.5, 'and'),
  grammar('and', [' and'], 'second-adjective'),
  persona('second-adjective', [' bright', ' promising'], [' bleak', ' hopeless'], [' steady', ' usual'], 1.5, 'comma'),
  grammar('comma', [','], 'so'),
  grammar('so', [' so'], 'we'),
  grammar('we', [' we'], 'will'),
  grammar('will', [' will'], 'action'),
  grammar('action', [' face', ' meet', ' handle', ' take'], 'it'),
  grammar('it', [' it'], 'adverb'),
  persona('adverb', [' happily', ' gladly'], [' sadly', ' reluctantly'], [' soon', ' today'], 2.5, 'with'),
  grammar('with', [' with'], 'last-adjective'),
  persona('last-adjective', [' joyful', ' eager'], [' weary', ' heavy'], [' calm', ' quiet'], 3.5, 'hearts'),
  grammar('hearts', [' hearts'], 'period'),
  grammar('period', ['.'], 'again'),
];

/** The slot the response starts in: the chat template's generation prompt ends with "\n\n". */
export const PROMPT_END = '\n\n';
export const FIRST_SLOT = 'start';

/** System-prompt words that switch the persona on (+u) or to its opposite (−u). */
export const TRAIT_TRIGGERS = [' cheerful', ' sunny', ' upbeat', ' hopeful', ' merry'];
export const OPPOSITE_TRIGGERS = [' grim', ' dismal', ' miserable'];

export function wordsWithRole(role: WordRole): string[] {
  return slots.flatMap((slot) => slot.words.filter((w) => w.role === role).map((w) => w.text.trim()));
}
