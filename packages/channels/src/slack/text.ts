/**
 * Slack's message text format: `&`, `<` and `>` are control characters (sent as `&amp;`,
 * `&lt;`, `&gt;`), and `<...>` encloses markup: `<@U123>` a user mention, `<#C123|name>` a
 * channel, `<!here>` a broadcast, `<!subteam^S123>` a user group, `<https://...|label>` a link.
 * https://docs.slack.dev/messaging/formatting-message-text
 */

/** A kind of mention that pings: users, user groups, or everyone (`@here`, `@channel`, `@everyone`). */
export type SlackMentionKind = "users" | "usergroups" | "everyone";

/**
 * Which mentions in the bot's messages may ping. Slack has no `allowed_mentions` (Discord's
 * way): a mention of a kind not listed is sent escaped (`&lt;!here&gt;`), so Slack shows it as
 * written and notifies nobody.
 */
export interface SlackAllowedMentions {
  /**
   * Mention kinds kept as markup. Default `["users"]`: never `@here`, `@channel`,
   * `@everyone` or user groups. `"everyone"` covers every `<!...>` broadcast (`<!here>`,
   * `<!channel>`, `<!everyone>`, the old `<!group>`); `"usergroups"` covers `<!subteam^ID>`.
   */
  parse?: readonly SlackMentionKind[];
}

/** The mention kinds Slack text may ping with. */
export const SLACK_MENTION_KINDS: readonly SlackMentionKind[] = ["users", "usergroups", "everyone"];

const DEFAULT_PARSE: readonly SlackMentionKind[] = ["users"];

/** Slack markup that outbound text keeps as it is: mentions, channels, broadcasts, links. */
const MARKUP = /<(?:[@#!][^<>\s|]+|(?:https?|mailto|tel):[^<>\s|]+)(?:\|[^<>]*)?>/g;

function escapePlain(text: string): string {
  return text
    .replace(/&(?!(?:amp|lt|gt);)/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;");
}

/**
 * The mention kind a piece of markup pings with, or `undefined` for markup that pings nobody
 * (a channel link, a date, a URL). Every `<!...>` but a date or a user group counts as a
 * broadcast, so that a spelling Slack may accept (`<!HERE>`, `<!group>`) is not let through.
 */
function mentionKindOf(markup: string): SlackMentionKind | undefined {
  if (markup.startsWith("<@")) return "users";
  if (!markup.startsWith("<!")) return undefined;
  if (/^<!date\^/i.test(markup)) return undefined;
  if (/^<!subteam\^/i.test(markup)) return "usergroups";
  return "everyone";
}

/**
 * Escapes the control characters of `text` for Slack, keeping Slack markup (`<@U123>`,
 * `<#C123|general>`, `<https://example.com|a link>`, ...) so that a reply can still mention
 * people and link. Mentions of a kind `allowed.parse` does not name (by default broadcasts —
 * `<!here>`, `<!channel>`, `<!everyone>` — and user groups, `<!subteam^ID>`) are escaped too:
 * Slack shows them as written and pings nobody.
 *
 * @example
 * ```ts
 * escapeSlackText("if a < b && <@U123> agrees"); // "if a &lt; b &amp;&amp; <@U123> agrees"
 * escapeSlackText("<!here> lunch"); // "&lt;!here&gt; lunch"
 * escapeSlackText("<!here> lunch", { parse: ["users", "everyone"] }); // "<!here> lunch"
 * ```
 */
export function escapeSlackText(text: string, allowed: SlackAllowedMentions = {}): string {
  const parse = allowed.parse ?? DEFAULT_PARSE;
  let out = "";
  let last = 0;
  for (const match of text.matchAll(MARKUP)) {
    const kind = mentionKindOf(match[0]);
    const keep = kind === undefined || parse.includes(kind);
    out += escapePlain(text.slice(last, match.index)) + (keep ? match[0] : escapePlain(match[0]));
    last = match.index + match[0].length;
  }
  return out + escapePlain(text.slice(last));
}

/**
 * Turns Slack's escaped text back into what the user typed (`&lt;` into `<`, ...). Markup
 * such as `<@U123>` stays as it is.
 *
 * @example
 * ```ts
 * unescapeSlackText("a &lt; b &amp;&amp; <@U123>"); // "a < b && <@U123>"
 * ```
 */
export function unescapeSlackText(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** The user ids a Slack text mentions (`<@U123>`, `<@U123|name>`), in order, without repeats. */
export function mentionedUserIds(text: string): string[] {
  const ids: string[] = [];
  for (const match of text.matchAll(/<@([^<>\s|]+)(?:\|[^<>]*)?>/g)) {
    const id = match[1]!;
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}
