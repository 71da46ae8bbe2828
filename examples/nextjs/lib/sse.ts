/**
 * Reads a `text/event-stream` body as the `/api/chat` route writes it: events separated by a
 * blank line, each with one `data:` line of JSON; comment lines (`: keepalive`) are skipped.
 * Works in the browser and in Node.
 */
export async function* readServerSentEvents<T>(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<T, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (data !== "") yield JSON.parse(data) as T;
        end = buffer.indexOf("\n\n");
      }
    }
  } finally {
    // Stopping early (break, throw) cancels the response body.
    await reader.cancel().catch(() => undefined);
  }
}
