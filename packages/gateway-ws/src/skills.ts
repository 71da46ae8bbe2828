/** What `skills.status` reports: the skills the agents were built with. */
import { type LoadSkillsResult, loadSkills, skillsForAgent } from "@beamclaw/core";

/** The skills the agents were built with (`GatewayServerOptions.skills`). */
export interface GatewaySkillsReport {
  /** The directories searched, highest precedence first. */
  dirs: string[];
  /** What `loadSkills` found in them: eligible, gated (with reasons), shadowed, invalid. */
  loaded: LoadSkillsResult;
  /** Per agent id, the names of the eligible skills selected for it (those in its prompt). */
  agents: Record<string, string[]>;
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
  options: { config?: Record<string, unknown> } = {},
): Promise<GatewaySkillsReport> {
  const loaded: LoadSkillsResult =
    dirs.length === 0
      ? { skills: [], gated: [], shadowed: [], invalid: [] }
      : await loadSkills({
          dirs,
          strict: false,
          ...(options.config === undefined ? {} : { config: options.config }),
        });
  const agents: Record<string, string[]> = {};
  for (const [agentId, allow] of Object.entries(selections)) {
    agents[agentId] = skillsForAgent(loaded.skills, allow === undefined ? {} : { allow }).map(
      (s) => s.name,
    );
  }
  return { dirs, loaded, agents };
}
