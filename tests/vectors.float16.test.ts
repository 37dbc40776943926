import { describe, expect, it } from 'vitest';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits, roundToFloat16 } from '../src/vectors/float16.js';

describe('float16 conversion', () => {
  it('round-trips every finite half-precision value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const exponent = (bits >> 10) & 0x1f;
      if (exponent === 0x1f) continue;
      expect(float32ToFloat16Bits(float16BitsToFloat32(bits))).toBe(bits);
    }
  });

  it('rounds to nearest even and saturates to infinity', () => {
    expect(roundToFloat16(1 + 2 ** -11)).toBe(1); // halfway between 1 and the next half: ties to even
    expect(roundToFloat16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(float16BitsToFloat32(float32ToFloat16Bits(65520))).toBe(Infinity);
    expect(roundToFloat16(65504)).toBe(65504);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))).toBe(true);
    expect(roundToFloat16(2 ** -24)).toBe(2 ** -24); // smallest subnormal
    expect(roundToFloat16(2 ** -26)).toBe(0);
  });

  it('converts bfloat16 by keeping the high 16 bits with rounding', () => {
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(1.5))).toBe(1.5);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(1 + 2 ** -9))).toBe(1); // tie to even
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(-3.140625))).toBe(-3.140625);
  });
});
