export {
  byteSizeFlag,
  choiceFlag,
  defaultDataDir,
  defaultPostgresUrl,
  durationFlag,
  instantFlag,
  integerFlag,
  periodTypeFlag,
} from './cli-values.js';
export { formatDuration, parseByteSize, parseDuration } from './duration.js';
export { ENGINE_DEFAULTS, resolveEngineSettings } from './engine-config.js';
