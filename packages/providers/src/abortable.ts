/**
 * Makes an abort take effect at once: events already parsed from the last chunk are not
 * delivered after the signal fired; the next step throws `AbortedError` instead, and the
 * source is closed (which cancels the response body).
 */
import type { ModelStreamEvent } from "@beamclaw/core";
import { abortedError, type CallContext } from "./errors.js";

export async function* abortable(
  source: AsyncGenerator<ModelStreamEvent, void, undefined>,
  signal: AbortSignal | undefined,
  context: CallContext,
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  if (signal === undefined) {
    yield* source;
    return;
  }
  for await (const event of source) {
    if (signal.aborted) throw abortedError(context, signal);
    yield event;
  }
}
