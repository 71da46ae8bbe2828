/** What `skills.status` reports: the skills the agents were built with. */
import { type LoadSkillsResult, loadSkills, skillsForAgent } from "@beamclaw/core";

/** The skills the agents were built with (`GatewayServerOptions.skills`). */
export interface GatewaySkillsReport {
  /** The directories searched, highest precedence first. */
  dirs: string[];
  /**
   * What `loadSkills` found in them: eligible, gated (with reasons), shadowed, invalid,
   * case-only name clashes and those over the limits.
   */
  loaded: LoadSkillsResult;
  /** Per agent id, the names of the eligible skills selected for it (those in its prompt). */
  agents: Record<string, string[]>;
}

/** Options of {@link buildSkillsReport} and {@link loadReportSkills}. */
export interface BuildSkillsReportOptions {
  /** For `requires.config`. */
  config?: Record<string, unknown>;
  /** `LoadSkillsOptions.maxSkills`. */
  maxSkills?: number;
  /** `LoadSkillsOptions.maxPromptBytes`. */
  maxPromptBytes?: number;
}

/**
 * Loads the skill directories once (malformed skills are collected, not thrown) and selects
 * each agent's skills: `selections[agentId]` lists names, `["*"]` or `undefined` means every
 * eligible skill, `[]` none (core's `skillsForAgent`).
 *
 * @example
 * ```ts
 * const report = await buildSkillsReport(["/srv/skills"], { main: undefined, ops: ["deploy"] });
 * const agent = withSkills(main, report.loaded.skills, { allow: ["*"] });
 * createGateway({ runtime, skills: report });
 * ```
 */
export async function buildSkillsReport(
  dirs: string[],
  selections: Record<string, string[] | undefined>,
  options: BuildSkillsReportOptions = {},
): Promise<GatewaySkillsReport> {
  return skillsReport(dirs, await loadReportSkills(dirs, options), selections);
}

/** The skills of `dirs` as {@link buildSkillsReport} loads them (not strict). */
export async function loadReportSkills(
  dirs: string[],
  options: BuildSkillsReportOptions = {},
): Promise<LoadSkillsResult> {
  if (dirs.length === 0) {
    return { skills: [], gated: [], shadowed: [], invalid: [], clashes: [], overLimit: undefined };
  }
  return loadSkills({
    dirs,
    strict: false,
    ...(options.config === undefined ? {} : { config: options.config }),
    ...(options.maxSkills === undefined ? {} : { maxSkills: options.maxSkills }),
    ...(options.maxPromptBytes === undefined ? {} : { maxPromptBytes: options.maxPromptBytes }),
  });
}

/**
 * The report of skills already loaded: each agent's selection of `loaded.skills`
 * (`selections` as in {@link buildSkillsReport}).
 */
export function skillsReport(
  dirs: string[],
  loaded: LoadSkillsResult,
  selections: Record<string, string[] | undefined>,
): GatewaySkillsReport {
  const agents: Record<string, string[]> = {};
  for (const [agentId, allow] of Object.entries(selections)) {
    agents[agentId] = skillsForAgent(loaded.skills, allow === undefined ? {} : { allow }).map(
      (s) => s.name,
    );
  }
  return { dirs, loaded, agents };
}
