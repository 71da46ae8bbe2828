import type { AgentDefinition } from "../sessions/types.js";
import type { Skill } from "./load.js";

/** Options of {@link skillsForAgent} and {@link withSkills}. */
export interface SkillSelection {
  /**
   * Skill names the agent may use; `["*"]` or omitted for every eligible skill, `[]` for
   * none. Names are case-insensitive (`deploy` selects a skill named `Deploy`). Names that are
   * not loaded (or were gated off) are ignored.
   */
  allow?: string[];
}

/** Options of {@link renderSkillsPrompt}. */
export interface RenderSkillsOptions {
  /**
   * `full` (default): one text per skill with its instructions. `index`: a single text
   * listing name, description and file of each skill, for agents that read a `SKILL.md`
   * with a file tool when they need it (fewer tokens per turn).
   */
  format?: "full" | "index";
}

/**
 * The skills an agent may use, in the order given.
 *
 * @example
 * ```ts
 * skillsForAgent(skills, { allow: ["summarize", "jq"] }).map((s) => s.name); // ["jq", "summarize"]
 * ```
 */
export function skillsForAgent(skills: readonly Skill[], selection: SkillSelection = {}): Skill[] {
  const allow = selection.allow;
  if (allow === undefined || allow.includes("*")) return [...skills];
  const names = new Set(allow.map((name) => name.toLowerCase()));
  return skills.filter((skill) => names.has(skill.name.toLowerCase()));
}

/**
 * The texts for `AgentDefinition.skills` (appended to the system prompt). Skills with
 * `disable-model-invocation: true` are left out: the model is not told about them, and only
 * a user can run them (see {@link userInvocableSkills}). A description is rendered on one
 * line (line breaks and other control characters become spaces) and a path holding a control
 * character is JSON-quoted, so neither can start a line of the prompt; the instructions are
 * the skill's own text, as written.
 *
 * @example
 * ```ts
 * const agent: AgentDefinition = { id: "ops", model: "anthropic/claude-sonnet-4-5",
 *   skills: renderSkillsPrompt(skillsForAgent(skills, { allow: ["*"] })) };
 * ```
 */
export function renderSkillsPrompt(
  skills: readonly Skill[],
  options: RenderSkillsOptions = {},
): string[] {
  const visible = skills.filter((skill) => !skill.disableModelInvocation);
  if (visible.length === 0) return [];
  if (options.format === "index") {
    const lines = visible.map(
      (skill) => `- ${skill.name}: ${oneLine(skill.description)} (${pathText(skill.file)})`,
    );
    return [
      [
        "## Skills",
        "Before a task one of these skills covers, read its SKILL.md and follow it.",
        ...lines,
      ].join("\n"),
    ];
  }
  return visible.map((skill) => {
    const head = [
      `## Skill: ${skill.name}`,
      oneLine(skill.description),
      `Directory: ${pathText(skill.dir)}`,
    ].join("\n");
    return skill.body.length > 0 ? `${head}\n\n${skill.body}` : head;
  });
}

/**
 * The skills a user may run as commands (`/name`): every skill with `user-invocable` not
 * false, including those hidden from the model by `disable-model-invocation`.
 *
 * @example
 * ```ts
 * for (const s of userInvocableSkills(skills)) registerCommand(`/${s.name}`, s.description);
 * ```
 */
export function userInvocableSkills(skills: readonly Skill[]): Skill[] {
  return skills.filter((skill) => skill.userInvocable);
}

/**
 * The agent resolver's step for skills: the agent with the eligible, allowed skills rendered
 * into `skills` (after any skill texts it already has).
 *
 * @example
 * ```ts
 * const { skills } = await loadSkills({ dirs: config.skills.dirs });
 * const agent = withSkills(baseAgent, skills, { allow: agentConfig.skills });
 * ```
 */
export function withSkills(
  agent: AgentDefinition,
  skills: readonly Skill[],
  selection: SkillSelection & RenderSkillsOptions = {},
): AgentDefinition {
  const texts = renderSkillsPrompt(skillsForAgent(skills, selection), selection);
  return { ...agent, skills: [...(agent.skills ?? []), ...texts] };
}

// Line and paragraph separators, other control characters (NEL, ESC, ...) and whitespace.
const BREAKS = /[\s\p{Cc}\p{Zl}\p{Zp}]+/gu;
const CONTROL = /[\p{Cc}\p{Zl}\p{Zp}]/u;
const CONTROLS = /[\p{Cc}\p{Zl}\p{Zp}]/gu;

/** A description on one line: no character of it can start a new line of the prompt. */
function oneLine(text: string): string {
  return text.replace(BREAKS, " ").trim();
}

/**
 * A path as is, or JSON-quoted when it holds a newline or another control character (those
 * JSON leaves as they are, such as NEL or U+2028, as `\uXXXX` too).
 */
function pathText(path: string): string {
  if (!CONTROL.test(path)) return path;
  return JSON.stringify(path).replace(
    CONTROLS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
