/**
 * Hook templates: `{{messages[0].subject}}` reads a value of the request's JSON payload.
 * A path is names and indexes (`a.b[0].c`, `a["x-y"]`); what it does not reach renders as
 * nothing, a string as it is, and any other value as JSON. Nothing is evaluated.
 */

/** The most characters one template renders (the rest is cut with a marker). */
export const MAX_RENDERED_CHARS = 100_000;

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/**
 * The value at `path` in `root`, or `undefined` when the path does not reach one (or is not
 * a path).
 *
 * @example
 * ```ts
 * valueAt({ messages: [{ id: "m1" }] }, "messages[0].id"); // "m1"
 * ```
 */
export function valueAt(root: unknown, path: string): unknown {
  const steps = pathSteps(path);
  if (steps === undefined) return undefined;
  let value = root;
  for (const step of steps) {
    if (value === null || typeof value !== "object") return undefined;
    if (typeof step === "number") {
      if (!Array.isArray(value)) return undefined;
      value = value[step];
    } else {
      if (Array.isArray(value) || !Object.hasOwn(value, step)) return undefined;
      value = (value as Record<string, unknown>)[step];
    }
  }
  return value;
}

/** Whether `template` reads anything from the payload. */
export function isTemplated(template: string): boolean {
  PLACEHOLDER.lastIndex = 0;
  return PLACEHOLDER.test(template);
}

/** `template` with each `{{path}}` replaced by the payload's value there. */
export function renderTemplate(template: string, payload: unknown): string {
  const text = template.replace(PLACEHOLDER, (_match, path: string) =>
    textOf(valueAt(payload, path)),
  );
  if (text.length <= MAX_RENDERED_CHARS) return text;
  return `${text.slice(0, MAX_RENDERED_CHARS)}\n[… ${text.length - MAX_RENDERED_CHARS} more characters cut]`;
}

function textOf(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** `a.b[0]["c d"]` as steps; `undefined` for something that is not such a path. */
function pathSteps(path: string): Array<string | number> | undefined {
  const steps: Array<string | number> = [];
  const pattern = /\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\["([^"\\]*)"\]/y;
  let at = 0;
  while (at < path.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(path);
    if (match === null || (match[1] !== undefined && at === 0 && path[0] === ".")) return undefined;
    if (match[1] !== undefined) steps.push(match[1]);
    else if (match[2] !== undefined) steps.push(Number(match[2]));
    else steps.push(match[3]!);
    at = pattern.lastIndex;
  }
  return steps.length === 0 ? undefined : steps;
}
