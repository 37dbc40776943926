import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// Instrumented graphs go to a per-run cache, never the user's.
process.env.PERSONA_CACHE_DIR ??= fs.mkdtempSync(path.join(os.tmpdir(), 'persona-cache-'));
