import { type Document, isMap, isNode, isScalar, isSeq, parseDocument } from "yaml";
import { z } from "zod";
import { InvalidSkillError } from "../errors.js";

/** What a skill needs from the machine; each unmet one gates the skill off. */
export interface SkillRequirements {
  /** Binaries that must all be on `PATH`. */
  bins: string[];
  /** Binaries of which at least one must be on `PATH`. */
  anyBins: string[];
  /** Environment variables that must be set and non-empty. */
  env: string[];
  /** `process.platform` values the skill runs on (any of them). */
  os: string[];
  /** Dotted configuration paths that must be truthy. */
  config: string[];
}

/** A parsed `SKILL.md`. */
export interface SkillDocument {
  name: string;
  description: string;
  /** Whether users may run it as a command (`/name`). Default true. */
  userInvocable: boolean;
  /** When true the model is not told about it; only a user can invoke it. Default false. */
  disableModelInvocation: boolean;
  /** OpenClaw's `always`: skip the requirement checks. Default false. */
  always: boolean;
  requires: SkillRequirements;
  /** The Markdown instructions after the frontmatter. */
  body: string;
  /** The frontmatter as written, for fields this loader does not interpret. */
  frontmatter: Record<string, unknown>;
}

/** `process.platform` values, so a misspelt `os` is an error rather than a silent gate. */
const PLATFORMS = [
  "aix",
  "android",
  "cygwin",
  "darwin",
  "freebsd",
  "haiku",
  "linux",
  "netbsd",
  "openbsd",
  "sunos",
  "win32",
] as const;

/** Skill names: also command names, so no spaces or slashes. */
export const SKILL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

// `bins: jq` is read as `bins: [jq]`; errors then name the element (`requires.bins.0`).
const oneOrMany = <T extends z.ZodType<string>>(item: T) =>
  z.preprocess((v) => (typeof v === "string" ? [v] : v), z.array(item));

const binName = z.string().trim().min(1, "a binary name cannot be empty");
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name");
const platform = z.enum(PLATFORMS);

const requiresSchema = z.strictObject({
  bins: oneOrMany(binName).optional(),
  anyBins: oneOrMany(binName).optional(),
  env: oneOrMany(envName).optional(),
  os: oneOrMany(platform).optional(),
  config: oneOrMany(z.string().min(1)).optional(),
});

// OpenClaw's form: `metadata: {"openclaw": {"requires": {...}, "os": [...], "always": true}}`.
const openclawSchema = z.looseObject({
  requires: requiresSchema.optional(),
  os: oneOrMany(platform).optional(),
  always: z.boolean().optional(),
});

const metadataSchema = z.preprocess(
  (value) => {
    if (typeof value !== "string") return value;
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return value;
    }
  },
  z.looseObject({
    openclaw: openclawSchema.optional(),
    clawdbot: openclawSchema.optional(),
    clawdis: openclawSchema.optional(),
  }),
);

const frontmatterSchema = z.looseObject({
  name: z
    .string()
    .regex(SKILL_NAME_PATTERN, `a name matching ${SKILL_NAME_PATTERN.source}`)
    .optional(),
  description: z
    .string({ error: (issue) => (issue.input === undefined ? "required" : "expected a string") })
    .trim()
    .min(1, "cannot be empty")
    .max(1024, "at most 1024 characters"),
  "user-invocable": z.boolean().optional(),
  "disable-model-invocation": z.boolean().optional(),
  always: z.boolean().optional(),
  requires: requiresSchema.optional(),
  metadata: metadataSchema.optional(),
});

const FRONTMATTER = /^\uFEFF?---[ \t]*\r?\n(?:([\s\S]*?)\r?\n)?(?:---|\.\.\.)[ \t]*(?:\r?\n|$)/;

/**
 * Parses a `SKILL.md`: YAML frontmatter between `---` lines, then Markdown.
 * @param file the path, for error messages.
 * @param fallbackName the name when the frontmatter has none (the skill's directory).
 * @throws InvalidSkillError naming the file, the field at fault and (when the field is
 * written in the YAML) its line in the file.
 *
 * @example
 * ```ts
 * const doc = parseSkillDocument("---\ndescription: Greets.\n---\nSay hi.", "hello/SKILL.md", "hello");
 * // { name: "hello", description: "Greets.", body: "Say hi.", userInvocable: true, ... }
 * ```
 */
export function parseSkillDocument(
  text: string,
  file: string,
  fallbackName: string,
): SkillDocument {
  const match = FRONTMATTER.exec(text);
  if (match === null) {
    const problem = /^\uFEFF?---[ \t]*\r?\n/.test(text)
      ? "not closed: the YAML block needs a closing --- line"
      : "missing: SKILL.md must start with YAML frontmatter between --- lines";
    throw new InvalidSkillError(file, "frontmatter", problem);
  }
  const source = match[1] ?? "";
  const doc = parseDocument(source, { uniqueKeys: true, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError !== undefined) {
    const { line, column } = position(source, yamlError.pos[0]);
    throw new InvalidSkillError(
      file,
      "frontmatter",
      `invalid YAML (line ${line}, column ${column}): ${yamlError.message}`,
      { cause: yamlError },
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    throw new InvalidSkillError(file, "frontmatter", `invalid YAML: ${String(error)}`, {
      cause: error,
    });
  }
  data ??= {};
  if (typeof data !== "object" || Array.isArray(data)) {
    throw new InvalidSkillError(file, "frontmatter", "must be a mapping of fields");
  }
  const parsed = frontmatterSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0] as z.core.$ZodIssue;
    let field = issue.path.map(String).join(".");
    let message = issue.message;
    let path: PropertyKey[] = issue.path;
    if (issue.code === "unrecognized_keys") {
      path = [...issue.path, issue.keys[0] ?? ""];
      field = path.map(String).join(".");
      message = "unknown field";
    }
    const at = fieldLine(doc, source, path);
    throw new InvalidSkillError(
      file,
      field || "frontmatter",
      at === undefined ? message : `${message} (line ${at})`,
    );
  }
  const fm = parsed.data;
  const name = fm.name ?? fallbackName;
  if (!SKILL_NAME_PATTERN.test(name)) {
    throw new InvalidSkillError(
      file,
      "name",
      `missing, and the directory name ${JSON.stringify(name)} is not a valid skill name`,
    );
  }
  const openclaw = fm.metadata?.openclaw ?? fm.metadata?.clawdbot ?? fm.metadata?.clawdis;
  const merge = (key: keyof SkillRequirements): string[] => [
    ...new Set([
      ...(fm.requires?.[key] ?? []),
      ...(openclaw?.requires?.[key] ?? []),
      ...(key === "os" ? (openclaw?.os ?? []) : []),
    ]),
  ];
  return {
    name,
    description: fm.description,
    userInvocable: fm["user-invocable"] ?? true,
    disableModelInvocation: fm["disable-model-invocation"] ?? false,
    always: fm.always ?? openclaw?.always ?? false,
    requires: {
      bins: merge("bins"),
      anyBins: merge("anyBins"),
      env: merge("env"),
      os: merge("os"),
      config: merge("config"),
    },
    body: text.slice(match[0].length).replace(/\r\n?/g, "\n").trim(),
    frontmatter: data as Record<string, unknown>,
  };
}

/** Line (from the file's first line: the YAML starts on line 2) and column of `offset`. */
function position(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, offset);
  return {
    line: before.split("\n").length + 1,
    column: before.length - before.lastIndexOf("\n"),
  };
}

/**
 * The file line of the frontmatter field at `path` (its value, or its key when it has no
 * value). When the path ends inside a value YAML does not hold as nodes (a JSON `metadata`
 * string), the line of the deepest field it does hold; undefined for a missing top-level field.
 */
function fieldLine(doc: Document, source: string, path: PropertyKey[]): number | undefined {
  let line: number | undefined;
  let node: unknown = doc.contents;
  const lineOf = (candidate: unknown) => {
    const at = isNode(candidate) ? candidate.range?.[0] : undefined;
    return at === undefined ? undefined : position(source, at).line;
  };
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find(
        (item) => isScalar(item.key) && String(item.key.value) === String(key),
      );
      if (pair === undefined) return line;
      line = lineOf(pair.value) ?? lineOf(pair.key) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number") {
      node = node.items[key];
      line = lineOf(node) ?? line;
    } else {
      // A scalar read as a one-element list (`bins: jq`), or a JSON string: its own line.
      return line;
    }
  }
  return line;
}
