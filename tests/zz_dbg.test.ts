import { it } from 'vitest';
import { captureResiduals } from '../src/runtime/capture.js';
import { SteerableModel } from '../src/runtime/model.js';
import { tinyModel } from './helpers/models.js';
it('dbg', async () => {
  const model = await SteerableModel.load(tinyModel('llama','optimum','fp16').dir, { withoutTokenizer: true });
  const rows = [{ inputIds: [11, 42, 7, 250, 99, 13] }];
  const a = await captureResiduals(model, rows, { layers: [0, 1] });
  const s = await model.session({ capture: [0, 1], steer: [0] });
  const b = await captureResiduals(model, rows, { layers: [0, 1] });
  // force steer layout via interventions with zero vector
  const c = await captureResiduals(model, rows.map(r => ({...r, interventions: { steer: [{ layer: 0, vector: new Float32Array(64), coefficient: 0 }] }})), { layers: [0, 1] });
  for (const L of [0, 1]) {
    const x = a.residuals.get(L)![0]!, y = c.residuals.get(L)![0]!;
    const diffs: string[] = [];
    x.forEach((v, i) => { if (v !== y[i]) diffs.push(`${i}:${v}->${y[i]}`); });
    console.log('layer', L, 'ndiff', diffs.length, diffs.slice(0, 5).join(' '));
  }
  void s; void b;
});
