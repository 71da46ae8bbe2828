import { constants, type Dirent } from "node:fs";
import { access, open, readdir, realpath, stat } from "node:fs/promises";
import { isAbsolute, join, relative, sep } from "node:path";
import {
  InvalidArgumentError,
  InvalidSkillError,
  SkillLimitError,
  SkillNameClashError,
} from "../errors.js";
import { parseSkillDocument, type SkillDocument } from "./frontmatter.js";
import { renderSkillsPrompt } from "./prompt.js";

/** Default of {@link LoadSkillsOptions.maxSkills}. */
export const DEFAULT_MAX_SKILLS = 150;
/** Default of {@link LoadSkillsOptions.maxPromptBytes}: twice the default `maxFileBytes`. */
export const DEFAULT_MAX_SKILL_PROMPT_BYTES = 512 * 1024;

/** A skill found on disk. */
export interface Skill extends SkillDocument {
  /** The skill's directory (where its scripts and references live). */
  dir: string;
  /** The path of its `SKILL.md`. */
  file: string;
  /** The search directory it was found in (one of `LoadSkillsOptions.dirs`). */
  root: string;
}

/** A skill that loaded but whose requirements are not met here. */
export interface GatedSkill {
  name: string;
  /** The skill's directory. */
  dir: string;
  /** Every unmet requirement, joined with `; `, e.g. `missing binary jq; env FOO not set`. */
  reason: string;
  reasons: string[];
  skill: Skill;
}

/** A skill hidden by a skill of the same name in an earlier directory. */
export interface ShadowedSkill {
  name: string;
  dir: string;
  /** The directory of the skill that won. */
  by: string;
}

/** Options of {@link loadSkills}. */
export interface LoadSkillsOptions {
  /**
   * Directories to search, highest precedence first: each holds one sub-directory per skill
   * with a `SKILL.md`. A directory that does not exist is skipped.
   */
  dirs: string[];
  /** For `requires.env` and `PATH`. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** For `requires.os`. Default `process.platform`. */
  platform?: string;
  /** Whether a binary is available. Default: an executable file of that name on `env.PATH`. */
  which?: (binary: string) => boolean | Promise<boolean>;
  /** For `requires.config`: dotted paths looked up here must be truthy. Default `{}`. */
  config?: Record<string, unknown>;
  /**
   * True (default): a malformed `SKILL.md` (bad frontmatter, over `maxFileBytes`, not UTF-8,
   * unreadable) rejects the whole load with `InvalidSkillError`. False: it is left out and
   * reported in `invalid`. Either way a skill removed while the load runs is skipped.
   */
  strict?: boolean;
  /**
   * A larger `SKILL.md` is invalid. Default 256 KiB. A `SKILL.md` that is a link out of its
   * skill directory is invalid too (the directory itself may be a link).
   */
  maxFileBytes?: number;
  /**
   * At most this many eligible skills are loaded. Default {@link DEFAULT_MAX_SKILLS} (150).
   * Eligible skills are taken in name order; the first one over either limit and every one
   * after it are left out and reported in `overLimit`.
   */
  maxSkills?: number;
  /**
   * At most this many bytes (UTF-8) of prompt text for the eligible skills, as
   * `renderSkillsPrompt` renders them in full (a skill with `disable-model-invocation: true`
   * counts 0). Default {@link DEFAULT_MAX_SKILL_PROMPT_BYTES} (512 KiB).
   */
  maxPromptBytes?: number;
}

/** What {@link loadSkills} found. */
export interface LoadSkillsResult {
  /** Eligible skills, sorted by name. */
  skills: Skill[];
  /** Skills whose requirements are not met, with the reason. */
  gated: GatedSkill[];
  /** Lower-precedence copies of a name, not used. */
  shadowed: ShadowedSkill[];
  /** Malformed skills (only when `strict: false`). */
  invalid: InvalidSkillError[];
  /**
   * Skills whose names differ from a loaded one's only in case, left out (skill names are
   * case-insensitive). Each names both files.
   */
  clashes: SkillNameClashError[];
  /** The eligible skills left out by `maxSkills` / `maxPromptBytes`, if any. */
  overLimit: SkillLimitError | undefined;
}

const SKILL_FILES = ["SKILL.md", "skill.md"];

/**
 * Loads skills from ordered directories. A skill is a directory with a `SKILL.md`: YAML
 * frontmatter (`name`, `description`, `user-invocable`, `disable-model-invocation`,
 * `requires: { bins, anyBins, env, os, config }`, or OpenClaw's
 * `metadata: { openclaw: { requires, os, always } }`) and Markdown instructions. On a name
 * clash the earlier directory wins (within one directory, the first skill directory by name).
 * Names are case-insensitive: of `Deploy` and `deploy` the one found first by that same rule
 * is loaded (within one directory `Deploy/` before `deploy/`: names are compared by UTF-16
 * code unit, capitals first) and the other is reported in `clashes`. Eligible skills beyond
 * `maxSkills` or `maxPromptBytes` (taken in name order) are left out and reported in `overLimit`.
 * A skill whose requirements are not met is gated off with the reason; `requires.bins` only
 * looks for an executable file on `PATH`, it runs nothing. Reads files only when called;
 * keeps nothing.
 *
 * @example
 * ```ts
 * const { skills, gated } = await loadSkills({
 *   dirs: ["./skills", `${os.homedir()}/.beamclaw/skills`, bundledSkillsDir],
 * });
 * for (const g of gated) console.warn(`skill ${g.name} is off: ${g.reason}`);
 * const agent = withSkills({ id: "ops", model: "anthropic/claude-sonnet-4-5" }, skills);
 * ```
 * @throws InvalidSkillError (code `INVALID_SKILL`) naming the file and field of a malformed skill.
 */
export async function loadSkills(options: LoadSkillsOptions): Promise<LoadSkillsResult> {
  if (!Array.isArray(options.dirs) || !options.dirs.every((dir) => typeof dir === "string"))
    throw new InvalidArgumentError("dirs: expected an array of directories");
  if (
    options.maxFileBytes !== undefined &&
    !(typeof options.maxFileBytes === "number" && options.maxFileBytes > 0)
  ) {
    throw new InvalidArgumentError(
      `maxFileBytes: expected a positive number of bytes, got ${String(options.maxFileBytes)}`,
    );
  }
  const maxSkills = positiveLimit("maxSkills", options.maxSkills, DEFAULT_MAX_SKILLS);
  const maxPromptBytes = positiveLimit(
    "maxPromptBytes",
    options.maxPromptBytes,
    DEFAULT_MAX_SKILL_PROMPT_BYTES,
  );
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  const strict = options.strict ?? true;
  const maxFileBytes = options.maxFileBytes ?? 256 * 1024;
  const whichCache = new Map<string, Promise<boolean>>();
  const which = (binary: string) => {
    let found = whichCache.get(binary);
    if (found === undefined) {
      found = Promise.resolve(
        options.which ? options.which(binary) : onPath(binary, env, platform),
      );
      whichCache.set(binary, found);
    }
    return found;
  };

  const winners = new Map<string, Skill>();
  const shadowed: ShadowedSkill[] = [];
  const invalid: InvalidSkillError[] = [];
  const clashes: SkillNameClashError[] = [];
  for (const root of options.dirs) {
    for (const found of await skillFiles(root)) {
      let skill: Skill | undefined;
      try {
        skill = await readSkill(found.file, found.dir, found.dirName, root, maxFileBytes);
      } catch (error) {
        if (strict || !InvalidSkillError.isInstance(error)) throw error;
        invalid.push(error);
        continue;
      }
      // Removed (or renamed) since the directory was listed: as if it was never there.
      if (skill === undefined) continue;
      const key = skill.name.toLowerCase();
      const winner = winners.get(key);
      if (winner === undefined) winners.set(key, skill);
      else if (winner.name === skill.name)
        shadowed.push({ name: skill.name, dir: skill.dir, by: winner.dir });
      else clashes.push(new SkillNameClashError(winner, skill));
    }
  }

  const eligible: Skill[] = [];
  const gated: GatedSkill[] = [];
  for (const skill of [...winners.values()].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  )) {
    const reasons = skill.always
      ? []
      : await unmet(skill, { env, platform, which, config: options.config ?? {} });
    if (reasons.length === 0) eligible.push(skill);
    else
      gated.push({ name: skill.name, dir: skill.dir, reason: reasons.join("; "), reasons, skill });
  }
  const { skills, overLimit } = applyLimits(eligible, { maxSkills, maxPromptBytes });
  return { skills, gated, shadowed, invalid, clashes, overLimit };
}

/** A limit option: its default when omitted, a whole number from 1 up otherwise. */
function positiveLimit(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(
      `${name}: expected a whole number from 1 up, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * The eligible skills (in name order) up to the first one that would exceed a limit; that
 * one and every later one are reported in a {@link SkillLimitError}, each with the limit it
 * is over (`maxSkills` when its place is past it, else `maxPromptBytes`).
 */
function applyLimits(
  eligible: Skill[],
  limits: { maxSkills: number; maxPromptBytes: number },
): { skills: Skill[]; overLimit: SkillLimitError | undefined } {
  let bytes = 0;
  for (const [index, skill] of eligible.entries()) {
    const size = renderSkillsPrompt([skill]).reduce(
      (total, text) => total + Buffer.byteLength(text, "utf8"),
      0,
    );
    if (index < limits.maxSkills && bytes + size <= limits.maxPromptBytes) {
      bytes += size;
      continue;
    }
    const dropped = eligible.slice(index).map((s, i) => ({
      name: s.name,
      file: s.file,
      limit: index + i >= limits.maxSkills ? ("maxSkills" as const) : ("maxPromptBytes" as const),
    }));
    return { skills: eligible.slice(0, index), overLimit: new SkillLimitError(dropped, limits) };
  }
  return { skills: eligible, overLimit: undefined };
}

async function skillFiles(
  root: string,
): Promise<Array<{ dir: string; dirName: string; file: string }>> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
  const out: Array<{ dir: string; dirName: string; file: string }> = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith(".")) continue;
    const dir = join(root, entry.name);
    if (!entry.isDirectory() && !(entry.isSymbolicLink() && (await isDirectory(dir)))) continue;
    for (const name of SKILL_FILES) {
      const file = join(dir, name);
      if (await isFile(file)) {
        out.push({ dir, dirName: entry.name, file });
        break;
      }
    }
  }
  return out;
}

/**
 * Reads one `SKILL.md`, or undefined when it (or its directory) is gone by now: a skill
 * removed while the load runs is skipped. Any other failure to read it is an
 * `InvalidSkillError` naming the file, so a non-strict load reports it and keeps the rest.
 */
async function readSkill(
  file: string,
  dir: string,
  dirName: string,
  root: string,
  maxFileBytes: number,
): Promise<Skill | undefined> {
  let text: string;
  try {
    const read = await readBounded(file, dir, maxFileBytes);
    if (read === undefined) return undefined;
    text = read;
  } catch (error) {
    if (InvalidSkillError.isInstance(error)) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new InvalidSkillError(
      file,
      undefined,
      `cannot be read: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return { ...parseSkillDocument(text, file, dirName), dir, file, root };
}

/**
 * The text of a `SKILL.md` inside `dir`, read through one file handle (so a file that grows
 * after the size check is still cut off at the limit) and decoded as strict UTF-8.
 */
async function readBounded(
  file: string,
  dir: string,
  maxFileBytes: number,
): Promise<string | undefined> {
  // A link to a file outside the skill's directory is not read into a prompt.
  const [realDir, realFile] = await Promise.all([realpath(dir), realpath(file)]);
  const inside = relative(realDir, realFile);
  if (inside === "" || inside === ".." || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
    throw new InvalidSkillError(
      file,
      undefined,
      `links to ${realFile}, outside its skill directory`,
    );
  }
  // Non-blocking, so a FIFO swapped in since the listing cannot hang the open.
  const flags = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
  const handle = await open(realFile, flags);
  try {
    const info = await handle.stat();
    // Replaced by something else (a directory, a FIFO) since it was listed.
    if (!info.isFile()) return undefined;
    const overLimit = (size: number) =>
      new InvalidSkillError(
        file,
        undefined,
        `is ${size} bytes, over the ${maxFileBytes}-byte limit`,
      );
    if (info.size > maxFileBytes) throw overLimit(info.size);
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, Math.floor(maxFileBytes) + 1 - length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, length);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxFileBytes) throw overLimit(length);
    }
    const buffer = Buffer.concat(chunks, length);
    try {
      return UTF8.decode(buffer);
    } catch (error) {
      throw new InvalidSkillError(
        file,
        undefined,
        "is not UTF-8 text (save it as UTF-8; UTF-16 is not read)",
        { cause: error },
      );
    }
  } finally {
    await handle.close();
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

interface GateContext {
  env: Record<string, string | undefined>;
  platform: string;
  which: (binary: string) => Promise<boolean>;
  config: Record<string, unknown>;
}

async function unmet(skill: Skill, ctx: GateContext): Promise<string[]> {
  const reasons: string[] = [];
  const { requires } = skill;
  if (requires.os.length > 0 && !requires.os.includes(ctx.platform)) {
    reasons.push(`os ${requires.os.join(" or ")} required`);
  }
  for (const bin of requires.bins) {
    if (!(await ctx.which(bin))) reasons.push(`missing binary ${bin}`);
  }
  if (requires.anyBins.length > 0) {
    const found = await Promise.all(requires.anyBins.map((bin) => ctx.which(bin)));
    if (!found.includes(true)) reasons.push(`missing binary ${requires.anyBins.join(" or ")}`);
  }
  for (const name of requires.env) {
    const value = ctx.env[name];
    if (value === undefined || value === "") reasons.push(`env ${name} not set`);
  }
  for (const path of requires.config) {
    if (!configValue(ctx.config, path)) reasons.push(`config ${path} not set`);
  }
  return reasons;
}

function configValue(config: Record<string, unknown>, path: string): boolean {
  let value: unknown = config;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) return false;
    value = (value as Record<string, unknown>)[key];
  }
  return Boolean(value);
}

/** Whether `binary` is an executable file on `PATH` (with `PATHEXT` on Windows). */
async function onPath(
  binary: string,
  env: Record<string, string | undefined>,
  platform: string,
): Promise<boolean> {
  const windows = platform === "win32";
  const extensions = windows ? ["", ...(env.PATHEXT ?? ".COM;.EXE;.BAT;.CMD").split(";")] : [""];
  if (binary.includes("/") || (windows && binary.includes("\\"))) {
    return (
      await Promise.all(extensions.map((ext) => isExecutable(binary + ext, windows)))
    ).includes(true);
  }
  const path = env.PATH ?? env.Path ?? "";
  for (const dir of path.split(windows ? ";" : ":")) {
    if (dir === "") continue;
    for (const ext of extensions) {
      if (await isExecutable(join(dir, binary + ext), windows)) return true;
    }
  }
  return false;
}

async function isExecutable(file: string, windows: boolean): Promise<boolean> {
  try {
    await access(file, windows ? constants.F_OK : constants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory();
  } catch {
    return false;
  }
}
