import type * as Vitest from "vitest";

/**
 * vitest refuses to be imported outside a vitest worker, and an app bundler must never pull
 * it into a server bundle just because the app uses `createScriptedProvider`. So it is loaded
 * only inside vitest (which sets `VITEST` in its workers), through a specifier bundlers do not
 * follow. Importing `@beamclaw/core/testing` anywhere stays harmless; calling a conformance
 * suite outside vitest fails with a message that says so.
 */
const specifier = "vitest";
export const vitest: typeof Vitest | Error =
  process.env.VITEST === undefined
    ? new Error("the conformance suites of @beamclaw/core/testing run only inside vitest")
    : await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier).catch(
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
