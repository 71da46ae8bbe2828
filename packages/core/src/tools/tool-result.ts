/**
 * Images in a tool's result: a screenshot, a chart, a page an MCP server rendered. A tool
 * returns them with {@link toolResult}; the runner checks each one and sends the valid ones to
 * the model as images of the result (`ToolResultPart.images`), outside the text cap.
 */
import { baseMediaType, detectBase64MediaType, MODEL_IMAGE_TYPES } from "../providers/media.js";
import type { ImagePart, JsonValue } from "../providers/types.js";

/** The most images one tool result carries to the model; those after it are left out. */
export const MAX_TOOL_RESULT_IMAGES = 8;

/** The largest image (decoded bytes) a tool result carries to the model: 5 MiB. */
export const MAX_TOOL_RESULT_IMAGE_BYTES = 5 * 1024 * 1024;

const TOOL_RESULT: unique symbol = Symbol.for("beamclaw.toolResult");

/**
 * A tool's result with images, made by {@link toolResult}. `AgentTool.execute` and a
 * `defineTool` tool's `execute` may return one in place of plain JSON.
 */
export interface ToolResultWithImages {
  /** Marks the value as made by {@link toolResult}. */
  readonly [TOOL_RESULT]: true;
  /** The text or JSON result, as a tool without images returns it. */
  readonly output: JsonValue;
  /** Images for the model: inline base64 (`data`), of a type in `MODEL_IMAGE_TYPES`. */
  readonly images: readonly ImagePart[];
}

/** Options of {@link toolResult}. */
export interface ToolResultOptions {
  /**
   * Images the model sees with the result: inline base64 `data` (no `data:` prefix), of type
   * `image/png`, `image/jpeg`, `image/gif` or `image/webp`. The runner checks each one: the
   * data must be base64 whose first bytes are of the type named, at most
   * {@link MAX_TOOL_RESULT_IMAGE_BYTES} decoded, at most {@link MAX_TOOL_RESULT_IMAGES} of
   * them. One that fails is left out, and the text result says which and why.
   */
  images?: readonly ImagePart[];
}

/**
 * A tool result that carries images to the model as images (not as base64 text, which the
 * output cap would cut and the model could not see).
 *
 * @example
 * ```ts
 * import { defineTool, toolResult } from "@beamclaw/core";
 * import { z } from "zod";
 *
 * const screenshot = defineTool({
 *   name: "screenshot",
 *   description: "A screenshot of the page",
 *   parameters: z.object({ url: z.string() }),
 *   execute: async ({ url }) =>
 *     toolResult(`screenshot of ${url}`, {
 *       images: [{ type: "image", mediaType: "image/png", data: await capture(url) }],
 *     }),
 * });
 * ```
 */
export function toolResult(
  output: JsonValue,
  options: ToolResultOptions = {},
): ToolResultWithImages {
  return { [TOOL_RESULT]: true, output, images: [...(options.images ?? [])] };
}

/** Whether `value` was made by {@link toolResult}. */
export function isToolResultWithImages(value: unknown): value is ToolResultWithImages {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [TOOL_RESULT]?: unknown })[TOOL_RESULT] === true
  );
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The decoded size of well-formed base64 text. */
function decodedBytes(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

/** Why `image` cannot go to the model, or undefined when it can. */
function imageProblem(image: unknown, maxBytes: number): string | undefined {
  if (typeof image !== "object" || image === null) return "not an image part";
  const { mediaType, data } = image as { mediaType?: unknown; data?: unknown };
  if (typeof mediaType !== "string" || !MODEL_IMAGE_TYPES.has(baseMediaType(mediaType))) {
    return `unsupported type (supported: ${[...MODEL_IMAGE_TYPES].join(", ")})`;
  }
  if (typeof data !== "string" || data.length === 0) return "no inline base64 data";
  if (data.length % 4 !== 0 || !BASE64.test(data)) return "data is not valid base64";
  const bytes = decodedBytes(data);
  if (bytes > maxBytes) return `${bytes} bytes, over the limit of ${maxBytes}`;
  const detected = detectBase64MediaType(data);
  if (detected !== baseMediaType(mediaType)) {
    return `content is ${detected ?? "not a known image type"}, not ${baseMediaType(mediaType)}`;
  }
  return undefined;
}

/** The text that stands for an image left out of a tool result. */
function imageNotShown(mediaType: unknown, reason: string): string {
  const type = typeof mediaType === "string" && mediaType !== "" ? ` ${mediaType}` : "";
  return `[image${type} not shown: ${reason}]`;
}

/**
 * The images of a tool result that can go to the model ({@link ToolResultOptions.images}'s
 * rules), as fresh `{ type: "image", mediaType, data }` parts, and a note
 * (`[image image/png not shown: <reason>]`) for each one left out. Never throws.
 */
export function checkToolImages(
  images: unknown,
  limits: { maxImages?: number; maxBytes?: number } = {},
): { images: ImagePart[]; notes: string[] } {
  const maxImages = limits.maxImages ?? MAX_TOOL_RESULT_IMAGES;
  const maxBytes = limits.maxBytes ?? MAX_TOOL_RESULT_IMAGE_BYTES;
  const kept: ImagePart[] = [];
  const notes: string[] = [];
  for (const image of Array.isArray(images) ? images : []) {
    const mediaType = (image as { mediaType?: unknown } | null)?.mediaType;
    const problem = imageProblem(image, maxBytes);
    if (problem !== undefined) {
      notes.push(imageNotShown(mediaType, problem));
    } else if (kept.length >= maxImages) {
      notes.push(imageNotShown(mediaType, `more than ${maxImages} images in one result`));
    } else {
      const { data } = image as { data: string };
      kept.push({ type: "image", mediaType: baseMediaType(mediaType as string), data });
    }
  }
  return { images: kept, notes };
}

/**
 * `output` with `notes` after it, as text: a string output is followed by them, other JSON
 * by its JSON text, `null` or `""` is replaced.
 */
export function withNotes(output: JsonValue, notes: readonly string[]): JsonValue {
  if (notes.length === 0) return output;
  const text =
    output === null || output === ""
      ? ""
      : typeof output === "string"
        ? output
        : JSON.stringify(output);
  return [text, ...notes].filter((line) => line !== "").join("\n");
}
