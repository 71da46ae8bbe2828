/**
 * Skills: `SKILL.md` directories (YAML frontmatter + Markdown instructions) loaded from
 * ordered directories, gated by their requirements, and rendered into an agent's prompt.
 *
 * @example
 * ```ts
 * import { loadSkills, withSkills } from "@beamclaw/core";
 *
 * const { skills, gated } = await loadSkills({ dirs: ["./skills", "/opt/beamclaw/skills"] });
 * const agent = withSkills({ id: "ops", model: "anthropic/claude-sonnet-4-5" }, skills);
 * ```
 */
export {
  parseSkillDocument,
  SKILL_NAME_PATTERN,
  type SkillDocument,
  type SkillRequirements,
} from "./frontmatter.js";
export {
  DEFAULT_MAX_SKILL_PROMPT_BYTES,
  DEFAULT_MAX_SKILLS,
  type GatedSkill,
  type LoadSkillsOptions,
  type LoadSkillsResult,
  loadSkills,
  type ShadowedSkill,
  type Skill,
} from "./load.js";
export {
  type RenderSkillsOptions,
  renderSkillsPrompt,
  type SkillSelection,
  skillsForAgent,
  userInvocableSkills,
  withSkills,
} from "./prompt.js";
export {
  type SkillsReloadCause,
  SkillsWatcher,
  type SkillsWatcherEvents,
  type SkillsWatcherOptions,
} from "./watch.js";
