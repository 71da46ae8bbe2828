/**
 * Slack's message text format: `&`, `<` and `>` are control characters (sent as `&amp;`,
 * `&lt;`, `&gt;`), and `<...>` encloses markup: `<@U123>` a user mention, `<#C123|name>` a
 * channel, `<!here>` a broadcast, `<https://...|label>` a link.
 * https://docs.slack.dev/messaging/formatting-message-text
 */

/** Slack markup that outbound text keeps as it is: mentions, channels, broadcasts, links. */
const MARKUP = /<(?:[@#!][^<>\s|]+|(?:https?|mailto|tel):[^<>\s|]+)(?:\|[^<>]*)?>/g;

function escapePlain(text: string): string {
  return text
    .replace(/&(?!(?:amp|lt|gt);)/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;");
}

/**
 * Escapes the control characters of `text` for Slack, keeping Slack markup (`<@U123>`,
 * `<https://example.com|a link>`, ...) so that a reply can still mention people and link.
 *
 * @example
 * ```ts
 * escapeSlackText("if a < b && <@U123> agrees"); // "if a &lt; b &amp;&amp; <@U123> agrees"
 * ```
 */
export function escapeSlackText(text: string): string {
  let out = "";
  let last = 0;
  for (const match of text.matchAll(MARKUP)) {
    out += escapePlain(text.slice(last, match.index)) + match[0];
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
