/**
 * Structured output: a run whose answer must be a JSON value conforming to a schema (a zod
 * schema or a JSON Schema). The schema is sent to the provider as the request's
 * `responseFormat` (constrained decoding where the provider has it); the loop validates the
 * final answer whatever the provider did, asks the model again with the problems when it
 * does not conform, and gives the value in the run's result (`RunResult.output`).
 */
import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";
import type { JsonObject, JsonValue, ModelResponseFormat } from "../providers/types.js";
import { describeArg } from "../runtime/validate.js";

/**
 * What a run's answer must be: JSON conforming to `schema`.
 *
 * @example
 * ```ts
 * const run = await session.send("Extract the invoice's number and total", {
 *   output: { schema: z.object({ number: z.string(), total: z.number() }), retries: 2 },
 * });
 * const { output } = await run.result; // { number: string; total: number } | undefined
 * ```
 */
export interface OutputSpec<S extends z.ZodType = z.ZodType> {
  /**
   * A zod schema (the answer is parsed with it: refinements are checked, transforms and
   * defaults applied) or a JSON Schema (draft 2020-12) of an object. The root must be an
   * object: every provider's constrained decoding asks for one.
   */
  schema: S | JsonObject;
  /** `^[a-zA-Z0-9_-]{1,64}$`, sent to providers that name the schema. Default `output`. */
  name?: string;
  /** What the answer is, for the model. */
  description?: string;
  /**
   * Constrained decoding where the provider has a strict mode (OpenAI's `strict`). Default:
   * on when OpenAI's strict mode takes the schema (every object closed, with all its
   * properties required, and only keywords it knows: not `minLength`, `oneOf`, `not`...),
   * which a `z.object` of required fields without length limits does; otherwise off.
   */
  strict?: boolean;
  /**
   * How many times the model is asked again (with what was wrong) when its answer is not
   * JSON conforming to the schema, before the run fails with `OUTPUT_INVALID`. An integer
   * from 0 to 5; default 1. Each try is a step (see `maxSteps`).
   */
  retries?: number;
}

/** A run's `output` option: a zod schema, or an {@link OutputSpec}. */
export type OutputOption<S extends z.ZodType = z.ZodType> = S | OutputSpec<S>;

/** The value a run's `output` option gives: the zod schema's output type, or JSON. */
export type OutputOf<O> = O extends z.ZodType
  ? z.output<O>
  : O extends { schema: infer S }
    ? S extends z.ZodType
      ? z.output<S>
      : JsonValue
    : JsonValue;

/** The default of {@link OutputSpec.retries}. */
const DEFAULT_RETRIES = 1;
const MAX_RETRIES = 5;
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** A checked `output` option: what the request carries and how an answer is validated. @internal */
export interface RunOutput {
  /** The request's `responseFormat`. */
  readonly format: ModelResponseFormat;
  readonly retries: number;
  /** The live zod schema, when one was given (else the JSON Schema's own validator). */
  readonly zod: z.ZodType;
  /** Whether `zod` was given by the caller (not made from the JSON Schema). */
  readonly live: boolean;
}

const resolved = new WeakMap<object, RunOutput>();

/** Where a session hands the agent loop its run's prepared output. @internal */
export const PREPARED_OUTPUT: unique symbol = Symbol("beamclaw.preparedOutput");

/**
 * Checks a run's or an agent's `output` option and prepares it.
 * @throws InvalidArgumentError naming `where` and what is wrong.
 * @internal
 */
export function resolveOutput(option: unknown, where: string): RunOutput {
  if (typeof option === "object" && option !== null) {
    const known = resolved.get(option);
    if (known !== undefined) return known;
  }
  const spec: OutputSpec =
    option instanceof z.ZodType ? { schema: option } : checkSpecObject(option, where);
  const name = spec.name ?? "output";
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new InvalidArgumentError(
      `${where}.name must be a string matching ${NAME.source}, got ${describeArg(name)}`,
    );
  }
  if (spec.description !== undefined && typeof spec.description !== "string") {
    throw new InvalidArgumentError(
      `${where}.description must be a string, got ${describeArg(spec.description)}`,
    );
  }
  if (spec.strict !== undefined && typeof spec.strict !== "boolean") {
    throw new InvalidArgumentError(
      `${where}.strict must be a boolean, got ${describeArg(spec.strict)}`,
    );
  }
  const retries = spec.retries ?? DEFAULT_RETRIES;
  if (!Number.isInteger(retries) || retries < 0 || retries > MAX_RETRIES) {
    throw new InvalidArgumentError(
      `${where}.retries must be an integer from 0 to ${MAX_RETRIES}, got ${describeArg(spec.retries)}`,
    );
  }
  const live = spec.schema instanceof z.ZodType;
  let schema: JsonObject;
  let zod: z.ZodType;
  if (spec.schema instanceof z.ZodType) {
    zod = spec.schema;
    schema = jsonSchemaOf(spec.schema, where);
  } else {
    schema = checkJsonSchema(spec.schema, where);
    zod = validatorOf(schema, where);
  }
  const format: ModelResponseFormat = { type: "json-schema", name, schema };
  if (spec.description !== undefined) format.description = spec.description;
  format.strict = spec.strict ?? strictCompatible(schema);
  const output: RunOutput = { format, retries, zod, live };
  if (typeof option === "object" && option !== null) resolved.set(option, output);
  return output;
}

/**
 * The JSON form of a checked `output` option, kept with a message in the durable queue (and
 * sent to the cluster node that runs it): a replay validates against the JSON Schema.
 * @internal
 */
export function storedOutput(output: RunOutput): JsonObject {
  const stored: JsonObject = {
    schema: output.format.schema,
    name: output.format.name,
    strict: output.format.strict ?? false,
    retries: output.retries,
  };
  if (output.format.description !== undefined) stored.description = output.format.description;
  return stored;
}

function checkSpecObject(option: unknown, where: string): OutputSpec {
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new InvalidArgumentError(
      `${where} must be a zod schema or { schema, name?, description?, strict?, retries? }, got ${describeArg(option)}`,
    );
  }
  const spec = option as OutputSpec;
  if (spec.schema === undefined) {
    throw new InvalidArgumentError(`${where}.schema is required (a zod schema or a JSON Schema)`);
  }
  return spec;
}

/** A zod schema's JSON Schema, as the model must write it (the schema's input). */
function jsonSchemaOf(schema: z.ZodType, where: string): JsonObject {
  let json: JsonObject;
  try {
    json = z.toJSONSchema(schema, { target: "draft-2020-12", io: "input" }) as JsonObject;
  } catch (error) {
    throw new InvalidArgumentError(
      `${where}.schema cannot be expressed as JSON Schema (${(error as Error).message})`,
      { cause: error },
    );
  }
  delete json.$schema;
  if (json.type !== "object") {
    throw new InvalidArgumentError(
      `${where}.schema must be an object schema (z.object(...)): providers constrain answers to objects`,
    );
  }
  return closeObjects(json) as JsonObject;
}

/**
 * `schema` with `additionalProperties: false` on every object that says nothing of extra
 * properties. A `z.object` drops unknown keys when it parses, so this changes nothing of
 * what is accepted; it tells the model to write none, and lets strict decoding apply.
 */
function closeObjects(schema: JsonValue): JsonValue {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    // `default`, `const`, `enum` and `examples` hold values, not schemas.
    out[key] =
      key === "default" || key === "const" || key === "enum" || key === "examples"
        ? (value as JsonValue)
        : closeObjects(value as JsonValue);
  }
  if (
    out.type === "object" &&
    typeof out.properties === "object" &&
    !("additionalProperties" in out)
  ) {
    out.additionalProperties = false;
  }
  return out;
}

function checkJsonSchema(schema: unknown, where: string): JsonObject {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    throw new InvalidArgumentError(
      `${where}.schema must be a zod schema or a JSON Schema object, got ${describeArg(schema)}`,
    );
  }
  const json = schema as JsonObject;
  if (json.type !== "object") {
    throw new InvalidArgumentError(
      `${where}.schema must be a JSON Schema of an object ({ "type": "object", ... }): providers constrain answers to objects`,
    );
  }
  const copy = copyJson(json, `${where}.schema`) as JsonObject;
  delete copy.$schema;
  return copy;
}

/**
 * A deep copy of `value`, which must be JSON (what the durable queue can keep).
 * @throws InvalidArgumentError naming the first part that is not.
 */
function copyJson(value: unknown, path: string, depth = 0): JsonValue {
  if (depth > 64) throw new InvalidArgumentError(`${path} is nested too deep`);
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      break;
    case "object": {
      if (value === null) return null;
      if (Array.isArray(value)) return value.map((v, i) => copyJson(v, `${path}[${i}]`, depth + 1));
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) break;
      const out: JsonObject = {};
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        // A `__proto__` key stays an own property, as `JSON.parse` makes it.
        Object.defineProperty(out, key, {
          value: copyJson(item, `${path}.${key}`, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
  }
  throw new InvalidArgumentError(`${path} is ${describeArg(value)}, which JSON cannot hold`);
}

/** A validator for a JSON Schema. */
function validatorOf(schema: JsonObject, where: string): z.ZodType {
  try {
    return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
  } catch (error) {
    throw new InvalidArgumentError(
      `${where}.schema is not a JSON Schema this runtime can validate with (${(error as Error).message})`,
      { cause: error },
    );
  }
}

/**
 * The JSON Schema keywords OpenAI's strict mode is documented to accept. A schema with any
 * other (`minLength`, `oneOf`, `not`, `patternProperties`...) is refused by it with a 400, so
 * the default leaves strict off for such a schema.
 */
const STRICT_KEYWORDS = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "const",
  "anyOf",
  "$ref",
  "$defs",
  "definitions",
  "description",
  "title",
  "pattern",
  "format",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minItems",
  "maxItems",
]);

/** Keywords whose values are maps of names to schemas. */
const SCHEMA_MAPS = new Set(["properties", "$defs", "definitions"]);

/**
 * Whether OpenAI's strict mode accepts `schema`: only keywords it knows, and every object
 * lists its properties, all of them `required`, with `additionalProperties: false`.
 */
export function strictCompatible(schema: JsonValue): boolean {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return false;
  for (const key of Object.keys(schema)) if (!STRICT_KEYWORDS.has(key)) return false;
  const isObject =
    schema.type === "object" || (Array.isArray(schema.type) && schema.type.includes("object"));
  if (isObject) {
    if (schema.additionalProperties !== false) return false;
    const properties = schema.properties;
    if (typeof properties !== "object" || properties === null || Array.isArray(properties)) {
      return false;
    }
    const required = Array.isArray(schema.required) ? schema.required : [];
    if (!Object.keys(properties).every((key) => required.includes(key))) return false;
  }
  for (const [key, value] of Object.entries(schema)) {
    if (SCHEMA_MAPS.has(key)) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
      if (!Object.values(value).every((item) => strictCompatible(item as JsonValue))) return false;
    } else if (key === "items") {
      if (!strictCompatible(value as JsonValue)) return false;
    } else if (key === "anyOf") {
      if (!Array.isArray(value) || !value.every(strictCompatible)) return false;
    }
  }
  return true;
}

/** What checking an answer against a run's output gives. @internal */
export type OutputCheck = { ok: true; value: JsonValue } | { ok: false; problems: string };

/**
 * Reads a final answer as the run's output: JSON (a Markdown code fence around it is
 * allowed, as models without constrained decoding often write one) that the schema accepts.
 * The value is the JSON as written: a zod schema's transforms are applied by the caller's
 * handle (see `RunHandle`), so that what travels in events and between nodes stays JSON.
 * @internal
 */
export function checkOutput(output: RunOutput, text: string): OutputCheck {
  const body = unfence(text.trim());
  if (body.length === 0) return { ok: false, problems: "the answer is empty" };
  let value: JsonValue;
  try {
    value = JSON.parse(body) as JsonValue;
  } catch (error) {
    return { ok: false, problems: `the answer is not JSON (${(error as Error).message})` };
  }
  const parsed = output.zod.safeParse(value);
  if (!parsed.success) return { ok: false, problems: describeIssues(parsed.error) };
  return { ok: true, value };
}

/**
 * Applies a live zod schema to a run's output (transforms, defaults): what the caller's
 * `result.output` is. @internal
 */
export function parseOutput(
  output: RunOutput,
  value: JsonValue,
): { ok: true; value: unknown } | { ok: false; problems: string } {
  const parsed = output.zod.safeParse(value);
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, problems: describeIssues(parsed.error) };
}

function unfence(text: string): string {
  const fence = /^```[a-zA-Z0-9_-]*\s*\n([\s\S]*?)\n?```$/.exec(text);
  return fence === null ? text : fence[1]!.trim();
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 10)
    .map((issue) => {
      const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
      return `${path}: ${issue.message}`;
    })
    .join("; ");
}

/**
 * The user message that asks the model again for an answer that conforms. @internal
 */
export function retryMessage(problems: string): string {
  return `Your answer does not conform to the required JSON Schema: ${problems}. Answer again with only the JSON value.`;
}
