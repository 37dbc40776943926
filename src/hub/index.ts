export { pullModel, type PullOptions, type PullSummary } from './pull.js';
export { formatBytes, formatDuration, formatProgress, type PullProgress } from './progress.js';
export {
  SUPPORTED_DTYPES,
  availableDtypes,
  dtypeFileSuffix,
  graphFilePath,
  isModelDtype,
  parseDtype,
  selectFilesForDtype,
  type ModelDtype,
  type RepoFile,
} from './selection.js';
