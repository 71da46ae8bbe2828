export {
  type ConfigDiff,
  ConfigError,
  type ConfigIssue,
  diffConfig,
  loadConfigFile,
  type ParseConfigOptions,
  parseConfig,
  parseConfigYaml,
  substituteEnv,
} from "./load.js";
export {
  type AgentConfig,
  AgentConfigSchema,
  type BeamClawConfig,
  type ConfigInput,
  ConfigSchema,
  type CronJobConfig,
  CronJobConfigSchema,
  configJsonSchema,
  type ExecToolConfig,
  ExecToolConfigSchema,
  ProviderConfigSchema,
  RESTART_ONLY_PATHS,
  type WebFetchToolConfig,
  WebFetchToolConfigSchema,
} from "./schema.js";
export { type ConfigEvents, ConfigService, type ConfigServiceOptions } from "./service.js";
