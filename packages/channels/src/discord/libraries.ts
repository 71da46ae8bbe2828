/**
 * discord.js's packages, loaded on first use: importing `@beamclaw/channels` must stay
 * cheap for hosts that never start a Discord channel.
 */
export interface DiscordLibraries {
  ws: typeof import("@discordjs/ws");
  rest: typeof import("@discordjs/rest");
  core: typeof import("@discordjs/core/http-only");
}

let loading: Promise<DiscordLibraries> | undefined;

/** Loads `@discordjs/ws`, `@discordjs/rest` and `@discordjs/core` once per process. */
export function loadDiscordLibraries(): Promise<DiscordLibraries> {
  loading ??= Promise.all([
    import("@discordjs/ws"),
    import("@discordjs/rest"),
    import("@discordjs/core/http-only"),
  ]).then(([ws, rest, core]) => ({ ws, rest, core }));
  // A failed import (a broken install) is not cached: the next start tries again.
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}
