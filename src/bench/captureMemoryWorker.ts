import { capturePeakMemoryWorker } from './captureBench.js';

// Child process of `npm run bench`: prints the peak RSS after streaming N samples through capture and pooling.
const samples = Number(process.argv[2]);
process.stdout.write(`${await capturePeakMemoryWorker(samples)}\n`);
