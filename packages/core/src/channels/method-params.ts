/**
 * The params schemas of the host's own channel gateway methods (`channels.pairing.*`,
 * `channels.start` / `stop` / `logout`): flat objects as OpenClaw's protocol describes them.
 */
import type { ChannelMethodParamsIssue, ChannelMethodParamsSchema } from "./types.js";

/** The type of one field of a flat params object. */
export type FlatParamsField = "string" | "boolean";

/**
 * A Standard Schema of a flat params object: the fields' types, the required ones, nothing
 * else allowed — what the protocol's params schemas say. Strings must be non-empty unless
 * named in `allowEmpty` (where the protocol's schema has no `minLength`).
 */
export function flatParamsSchema(
  fields: Readonly<Record<string, FlatParamsField>>,
  required: readonly string[],
  allowEmpty: readonly string[] = [],
): ChannelMethodParamsSchema {
  return {
    "~standard": {
      version: 1,
      vendor: "beamclaw",
      validate(value: unknown) {
        const issues: ChannelMethodParamsIssue[] = [];
        if (typeof value !== "object" || value === null || Array.isArray(value)) {
          return { issues: [{ message: "params must be an object" }] };
        }
        const object = value as Record<string, unknown>;
        for (const key of required) {
          if (object[key] === undefined) issues.push({ message: "is required", path: [key] });
        }
        for (const [key, v] of Object.entries(object)) {
          const type = Object.hasOwn(fields, key) ? fields[key] : undefined;
          if (type === undefined) {
            issues.push({ message: "is not a known parameter", path: [key] });
          } else if (v !== undefined && typeof v !== type) {
            issues.push({ message: `must be a ${type}`, path: [key] });
          } else if (type === "string" && v === "" && !allowEmpty.includes(key)) {
            issues.push({ message: "must not be empty", path: [key] });
          }
        }
        return issues.length > 0 ? { issues } : { value: object };
      },
    },
  };
}
