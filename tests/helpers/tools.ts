import * as fs from 'node:fs';

/** Chromium for PNGs and render checks: Debian's, or the one PERSONA_CHROMIUM names. */
export const chromiumPath = process.env.PERSONA_CHROMIUM || '/usr/bin/chromium';

/**
 * Whether an optional system tool is there. Developers without it get a skipped test and a warning; CI sets
 * PERSONA_REQUIRE_TOOLS=1 (it installs them), so there a missing tool fails the suite instead of going green unseen.
 */
export function optionalTool(available: boolean, what: string): boolean {
  if (available) return true;
  if (process.env.PERSONA_REQUIRE_TOOLS) throw new Error(`PERSONA_REQUIRE_TOOLS is set but ${what} is missing`);
  console.warn(`skipping tests that need ${what}`);
  return false;
}

export const hasChromium = optionalTool(fs.existsSync(chromiumPath), `Chromium at ${chromiumPath} (apt-get install chromium)`);
