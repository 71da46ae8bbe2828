/**
 * A compact HTML to Markdown / plain-text extractor for pages an agent reads. It is not a
 * browser: a forgiving tokenizer, a tree builder that knows the common implied end tags, and
 * a renderer that keeps what carries meaning (headings, paragraphs, links, lists, code,
 * quotes, tables) and drops what does not (scripts, styles, navigation, forms, hidden
 * elements). The main content is taken from `<main>` or a single `<article>` when present.
 */

interface HtmlElement {
  tag: string;
  attrs: Map<string, string>;
  children: HtmlNode[];
}
type HtmlNode = HtmlElement | string;

/** What {@link htmlToMarkdown} and {@link htmlToText} return. */
export interface HtmlExtraction {
  /** The `<title>`, or the first `<h1>`, when there is one. */
  title: string | undefined;
  content: string;
}

/** Options of the HTML extractors. */
export interface HtmlExtractionOptions {
  /** Resolves relative links and images (the page's URL). */
  baseUrl?: string | URL;
}

const tags = (names: string): Set<string> => new Set(names.split(" "));

const VOID = tags("area base br col embed hr img input link meta param source track wbr");
const RAW_TEXT = tags("script style textarea title xmp iframe noembed noframes noscript");
const DROP = tags(
  "head title base script style noscript template svg math canvas iframe object embed nav aside button select input textarea dialog audio video map link meta",
);
const DROP_ROLES = tags("navigation complementary search dialog alert");
const BLOCK = tags(
  "address article aside blockquote body caption center dd details dialog dir div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main menu nav ol p pre section summary table tbody td tfoot th thead tr ul",
);
const CLOSES_P = tags(
  "address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr main menu nav ol p pre section summary table ul",
);
const SCOPE = tags("html table td th caption template button object");
const HEADINGS = tags("h1 h2 h3 h4 h5 h6");
const MAX_DEPTH = 256;

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: "\u00a0",
  copy: "©",
  reg: "®",
  trade: "™",
  hellip: "…",
  mdash: "—",
  ndash: "–",
  lsquo: "‘",
  rsquo: "’",
  ldquo: "“",
  rdquo: "”",
  sbquo: "‚",
  bdquo: "„",
  laquo: "«",
  raquo: "»",
  bull: "•",
  middot: "·",
  times: "×",
  divide: "÷",
  minus: "−",
  plusmn: "±",
  deg: "°",
  euro: "€",
  pound: "£",
  yen: "¥",
  cent: "¢",
  sect: "§",
  para: "¶",
  frac12: "½",
  frac14: "¼",
  frac34: "¾",
  larr: "←",
  rarr: "→",
  uarr: "↑",
  darr: "↓",
  harr: "↔",
  le: "≤",
  ge: "≥",
  ne: "≠",
  shy: "\u00ad",
  zwj: "\u200d",
  zwnj: "\u200c",
  ensp: "\u2002",
  emsp: "\u2003",
  thinsp: "\u2009",
  hyphen: "‐",
  dagger: "†",
  Dagger: "‡",
  prime: "′",
  Prime: "″",
  check: "✓",
  star: "☆",
  hearts: "♥",
  iexcl: "¡",
  iquest: "¿",
  szlig: "ß",
  eacute: "é",
  egrave: "è",
  ecirc: "ê",
  aacute: "á",
  agrave: "à",
  acirc: "â",
  auml: "ä",
  ouml: "ö",
  uuml: "ü",
  Auml: "Ä",
  Ouml: "Ö",
  Uuml: "Ü",
  ccedil: "ç",
  ntilde: "ñ",
  oacute: "ó",
  iacute: "í",
  uacute: "ú",
};

/** Decodes character references: `&amp;`, `&#39;`, `&#x1F600;` and common named ones. */
export function decodeEntities(text: string): string {
  if (!text.includes("&")) return text;
  return text.replace(
    /&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,7}|[a-zA-Z][a-zA-Z0-9]{1,31});?/g,
    (match, ref: string) => {
      if (ref.startsWith("#")) {
        const code =
          ref[1] === "x" || ref[1] === "X"
            ? Number.parseInt(ref.slice(2), 16)
            : Number(ref.slice(1));
        if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return "\ufffd";
        return String.fromCodePoint(code);
      }
      const named = ENTITIES[ref];
      if (named === undefined) return match;
      // Without the semicolon only the legacy five are references; "&copy2" stays text.
      if (!match.endsWith(";") && !["amp", "lt", "gt", "quot", "nbsp"].includes(ref)) return match;
      return named;
    },
  );
}

/** Parses HTML into a tolerant element tree rooted at `#document`. */
function parseHtml(html: string): HtmlElement {
  const root: HtmlElement = { tag: "#document", attrs: new Map(), children: [] };
  const stack: HtmlElement[] = [root];
  const current = () => stack[stack.length - 1] as HtmlElement;
  const text = (value: string) => {
    if (value.length > 0) current().children.push(decodeEntities(value));
  };
  const popTo = (index: number) => {
    stack.length = Math.max(1, index);
  };
  const findOpen = (names: Set<string> | string, stopAt: Set<string>): number => {
    for (let i = stack.length - 1; i > 0; i--) {
      const tag = (stack[i] as HtmlElement).tag;
      if (typeof names === "string" ? tag === names : names.has(tag)) return i;
      if (stopAt.has(tag)) return -1;
    }
    return -1;
  };
  const closeImplied = (tag: string) => {
    let index = -1;
    if (tag === "li") index = findOpen("li", new Set(["ul", "ol", "menu", ...SCOPE]));
    else if (tag === "dt" || tag === "dd")
      index = findOpen(new Set(["dt", "dd"]), new Set(["dl", ...SCOPE]));
    else if (tag === "tr") index = findOpen("tr", new Set(["table", "tbody", "thead", "tfoot"]));
    else if (tag === "td" || tag === "th")
      index = findOpen(new Set(["td", "th"]), new Set(["tr", "table"]));
    else if (tag === "option") index = findOpen("option", new Set(["select", ...SCOPE]));
    else if (tag === "tbody" || tag === "thead" || tag === "tfoot")
      index = findOpen(new Set(["tbody", "thead", "tfoot"]), new Set(["table"]));
    if (index > 0) popTo(index);
    if (CLOSES_P.has(tag)) {
      const p = findOpen("p", SCOPE);
      if (p > 0) popTo(p);
    }
    if (HEADINGS.has(tag) && HEADINGS.has(current().tag)) popTo(stack.length - 1);
  };
  const startTag = (tag: string, attrs: Map<string, string>) => {
    closeImplied(tag);
    const element: HtmlElement = { tag, attrs, children: [] };
    current().children.push(element);
    if (!VOID.has(tag) && stack.length < MAX_DEPTH) stack.push(element);
    return element;
  };
  const endTag = (tag: string) => {
    if (tag === "br") {
      startTag("br", new Map());
      return;
    }
    const index = findOpen(tag, new Set());
    if (index > 0) popTo(index);
  };

  const length = html.length;
  let i = 0;
  while (i < length) {
    const lt = html.indexOf("<", i);
    if (lt === -1) {
      text(html.slice(i));
      break;
    }
    text(html.slice(i, lt));
    i = lt;
    const next = html[i + 1] ?? "";
    if (html.startsWith("<!--", i)) {
      const end = html.indexOf("-->", i + 4);
      i = end === -1 ? length : end + 3;
    } else if (html.startsWith("<![CDATA[", i)) {
      const end = html.indexOf("]]>", i + 9);
      current().children.push(html.slice(i + 9, end === -1 ? length : end));
      i = end === -1 ? length : end + 3;
    } else if (next === "!" || next === "?") {
      const end = html.indexOf(">", i + 2);
      i = end === -1 ? length : end + 1;
    } else if (next === "/") {
      const match = /^<\/([a-zA-Z][^\s/>]*)[^>]*>?/.exec(html.slice(i, i + 256));
      if (match !== null) {
        endTag((match[1] as string).toLowerCase());
        i += match[0].length;
      } else {
        const end = html.indexOf(">", i + 2);
        i = end === -1 ? length : end + 1;
      }
    } else if (/[a-zA-Z]/.test(next)) {
      const tag = readTag(html, i);
      i = tag.end;
      const element = startTag(tag.name, tag.attrs);
      if (RAW_TEXT.has(tag.name) && !VOID.has(tag.name)) {
        const close = new RegExp(`</${tag.name}[\\s/>]`, "gi");
        close.lastIndex = i;
        const found = close.exec(html);
        const endOfText = found === null ? length : found.index;
        const raw = html.slice(i, endOfText);
        if (raw.length > 0)
          element.children.push(
            tag.name === "textarea" || tag.name === "title" ? decodeEntities(raw) : raw,
          );
        const gt = found === null ? -1 : html.indexOf(">", found.index);
        i = gt === -1 ? length : gt + 1;
        endTag(tag.name);
      }
    } else {
      text("<");
      i++;
    }
  }
  return root;
}

function readTag(
  html: string,
  start: number,
): { name: string; attrs: Map<string, string>; end: number } {
  let i = start + 1;
  const nameStart = i;
  while (i < html.length && !/[\s/>]/.test(html[i] as string)) i++;
  const name = html.slice(nameStart, i).toLowerCase();
  const attrs = new Map<string, string>();
  while (i < html.length) {
    while (i < html.length && /[\s/]/.test(html[i] as string)) i++;
    if (i >= html.length) break;
    if (html[i] === ">") {
      i++;
      break;
    }
    const attrStart = i;
    while (i < html.length && !/[\s/>=]/.test(html[i] as string)) i++;
    if (i === attrStart) i++;
    const attrName = html.slice(attrStart, i).toLowerCase();
    while (i < html.length && /\s/.test(html[i] as string)) i++;
    let value = "";
    if (html[i] === "=") {
      i++;
      while (i < html.length && /\s/.test(html[i] as string)) i++;
      const quote = html[i];
      if (quote === '"' || quote === "'") {
        const end = html.indexOf(quote, i + 1);
        value = html.slice(i + 1, end === -1 ? html.length : end);
        i = end === -1 ? html.length : end + 1;
      } else {
        const valueStart = i;
        while (i < html.length && !/[\s>]/.test(html[i] as string)) i++;
        value = html.slice(valueStart, i);
      }
    }
    if (attrName !== "" && !attrs.has(attrName)) attrs.set(attrName, decodeEntities(value));
  }
  return { name, attrs, end: i };
}

interface RenderContext {
  markdown: boolean;
  base: URL | undefined;
  inArticle: boolean;
}

function isDropped(el: HtmlElement, ctx: RenderContext): boolean {
  if (DROP.has(el.tag)) return true;
  if (el.tag === "footer" && !ctx.inArticle) return true;
  if (el.attrs.has("hidden") || el.attrs.get("aria-hidden") === "true") return true;
  const role = el.attrs.get("role");
  if (role !== undefined && DROP_ROLES.has(role)) return true;
  const style = el.attrs.get("style");
  return style !== undefined && /(?:display\s*:\s*none|visibility\s*:\s*hidden)/i.test(style);
}

function hasBlockChild(el: HtmlElement): boolean {
  return el.children.some((c) => typeof c !== "string" && (BLOCK.has(c.tag) || hasBlockChild(c)));
}

/** Collapses HTML whitespace to single spaces. */
function collapse(text: string): string {
  return text.replace(/[ \t\n\r\f]+/g, " ");
}

/** Trims an inline run into a paragraph: each line (from `<br>`) trimmed, empty lines gone. */
function paragraph(inline: string): string {
  return inline
    .split("\n")
    .map((line) => line.replace(/ {2,}/g, " ").trim())
    .filter((line) => line.length > 0)
    .join("\n");
}

function renderBlocks(nodes: HtmlNode[], ctx: RenderContext): string[] {
  const out: string[] = [];
  let inline = "";
  const flush = () => {
    const p = paragraph(inline);
    if (p.length > 0) out.push(p);
    inline = "";
  };
  for (const node of nodes) {
    if (typeof node === "string") {
      inline += collapse(node);
    } else if (isDropped(node, ctx)) {
      // skipped with its subtree
    } else if (BLOCK.has(node.tag) || (node.tag !== "a" && hasBlockChild(node))) {
      flush();
      out.push(...renderBlock(node, ctx));
    } else {
      inline += renderInline(node, ctx);
    }
  }
  flush();
  return out;
}

function renderBlock(el: HtmlElement, ctx: RenderContext): string[] {
  const tag = el.tag;
  if (HEADINGS.has(tag)) {
    const text = paragraph(inlineOf(el, ctx)).replace(/\n/g, " ");
    if (text.length === 0) return [];
    return [ctx.markdown ? `${"#".repeat(Number(tag[1]))} ${text}` : text];
  }
  switch (tag) {
    case "ul":
    case "ol":
    case "menu":
    case "dir":
      return renderList(el, ctx);
    case "pre":
      return renderPre(el, ctx);
    case "blockquote": {
      const inner = renderBlocks(el.children, ctx).join("\n\n");
      if (inner.length === 0) return [];
      return [
        inner
          .split("\n")
          .map((line) => (line.length > 0 ? `> ${line}` : ">"))
          .join("\n"),
      ];
    }
    case "hr":
      return ctx.markdown ? ["---"] : [];
    case "table":
      return renderTable(el, ctx);
    case "dt":
    case "summary": {
      const text = paragraph(inlineOf(el, ctx));
      if (text.length === 0) return [];
      return [ctx.markdown ? `**${text}**` : text];
    }
    case "li":
      // An item outside any list: still an item.
      return indentItem(renderBlocks(el.children, ctx), "- ");
    case "article":
      return renderBlocks(el.children, { ...ctx, inArticle: true });
    default:
      return renderBlocks(el.children, ctx);
  }
}

function indentItem(blocks: string[], marker: string): string[] {
  if (blocks.length === 0) return [];
  const pad = " ".repeat(marker.length);
  const lines = blocks.join("\n").split("\n");
  return [
    lines.map((line, i) => (i === 0 ? marker : line.length > 0 ? pad : "") + line).join("\n"),
  ];
}

function renderList(el: HtmlElement, ctx: RenderContext): string[] {
  const ordered = el.tag === "ol";
  let n = Number.parseInt(el.attrs.get("start") ?? "1", 10);
  if (!Number.isFinite(n)) n = 1;
  const items: string[] = [];
  for (const child of el.children) {
    if (typeof child === "string") {
      const loose = paragraph(collapse(child));
      if (loose.length > 0) items.push(...indentItem([loose], "- "));
    } else if (isDropped(child, ctx)) {
      // skipped
    } else if (child.tag === "li") {
      const marker = ordered ? `${n++}. ` : "- ";
      items.push(...indentItem(renderBlocks(child.children, ctx), marker));
    } else {
      // A list nested directly in a list (no <li> around it) indents under the previous item.
      for (const block of renderBlock(child, ctx)) {
        items.push(
          block
            .split("\n")
            .map((line) => (line.length > 0 ? `  ${line}` : line))
            .join("\n"),
        );
      }
    }
  }
  return items.length > 0 ? [items.join("\n")] : [];
}

function renderPre(el: HtmlElement, ctx: RenderContext): string[] {
  let raw = rawText(el);
  if (raw.startsWith("\n")) raw = raw.slice(1);
  raw = raw.replace(/\s+$/, "");
  if (raw.trim().length === 0) return [];
  if (!ctx.markdown) return [raw];
  const code = el.children.find((c): c is HtmlElement => typeof c !== "string" && c.tag === "code");
  const className = `${code?.attrs.get("class") ?? ""} ${el.attrs.get("class") ?? ""}`;
  const language = /(?:^|\s)(?:language|lang)-([\w+#.-]+)/.exec(className)?.[1] ?? "";
  const longest = Math.max(2, ...Array.from(raw.matchAll(/`+/g), (m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  return [`${fence}${language}\n${raw}\n${fence}`];
}

function renderTable(el: HtmlElement, ctx: RenderContext): string[] {
  const rows: HtmlElement[][] = [];
  const collect = (node: HtmlElement) => {
    for (const child of node.children) {
      if (typeof child === "string" || isDropped(child, ctx)) continue;
      if (child.tag === "tr") {
        rows.push(
          child.children.filter(
            (c): c is HtmlElement => typeof c !== "string" && (c.tag === "td" || c.tag === "th"),
          ),
        );
      } else if (child.tag === "thead" || child.tag === "tbody" || child.tag === "tfoot") {
        collect(child);
      }
    }
  };
  collect(el);
  const width = Math.max(0, ...rows.map((r) => r.length));
  // A one-row or one-column table is layout, not data: render its cells as blocks.
  if (rows.length < 2 || width < 2) {
    return rows.flatMap((row) => row.flatMap((cell) => renderBlocks(cell.children, ctx)));
  }
  const cellText = (cell: HtmlElement) => {
    const text = renderBlocks(cell.children, ctx)
      .join(" ")
      .replace(/\s*\n\s*/g, " ")
      .trim();
    return ctx.markdown ? text.replace(/\|/g, "\\|") : text;
  };
  const lines = rows.map((row) => {
    const cells = row.map(cellText);
    while (cells.length < width) cells.push("");
    return ctx.markdown ? `| ${cells.join(" | ")} |` : cells.join(" | ");
  });
  if (ctx.markdown) lines.splice(1, 0, `|${" --- |".repeat(width)}`);
  const caption = el.children.find(
    (c): c is HtmlElement => typeof c !== "string" && c.tag === "caption",
  );
  const title = caption === undefined ? "" : paragraph(inlineOf(caption, ctx));
  return title.length > 0 ? [title, lines.join("\n")] : [lines.join("\n")];
}

function inlineOf(el: HtmlElement, ctx: RenderContext): string {
  let out = "";
  for (const child of el.children) {
    if (typeof child === "string") out += collapse(child);
    else if (!isDropped(child, ctx)) out += renderInline(child, ctx);
  }
  return out;
}

/** Wraps the non-blank middle of `text` in `marker`, keeping the surrounding spaces outside. */
function wrap(text: string, marker: string): string {
  const match = /^(\s*)([\s\S]*?)(\s*)$/.exec(text);
  if (match === null || match[2] === "") return text;
  return `${match[1]}${marker}${match[2]}${marker}${match[3]}`;
}

function renderInline(el: HtmlElement, ctx: RenderContext): string {
  switch (el.tag) {
    case "br":
      return "\n";
    case "a": {
      const inner = inlineOf(el, ctx);
      const text = paragraph(inner).replace(/\n/g, " ");
      const href = ctx.markdown ? resolveUrl(el.attrs.get("href"), ctx.base) : undefined;
      const label = href === undefined ? text : `[${text.replace(/([[\]])/g, "\\$1")}](${href})`;
      if (text.length === 0) return /\s/.test(inner) ? " " : "";
      return `${/^\s/.test(inner) ? " " : ""}${label}${/\s$/.test(inner) ? " " : ""}`;
    }
    case "img": {
      const alt = collapse(el.attrs.get("alt") ?? "").trim();
      if (!ctx.markdown || alt.length === 0) return "";
      const src = resolveUrl(el.attrs.get("src"), ctx.base);
      return src === undefined ? alt : `![${alt}](${src})`;
    }
    case "code":
    case "kbd":
    case "samp":
    case "tt": {
      const text = collapse(rawText(el));
      if (!ctx.markdown || text.trim().length === 0) return text;
      const longest = Math.max(0, ...Array.from(text.matchAll(/`+/g), (m) => m[0].length));
      const fence = "`".repeat(longest + 1);
      const pad = text.startsWith("`") || text.endsWith("`") ? " " : "";
      return `${fence}${pad}${text}${pad}${fence}`;
    }
    case "strong":
    case "b":
      return ctx.markdown ? wrap(inlineOf(el, ctx), "**") : inlineOf(el, ctx);
    case "em":
    case "i":
    case "cite":
      return ctx.markdown ? wrap(inlineOf(el, ctx), "*") : inlineOf(el, ctx);
    case "del":
    case "s":
    case "strike":
      return ctx.markdown ? wrap(inlineOf(el, ctx), "~~") : inlineOf(el, ctx);
    case "q":
      return `“${inlineOf(el, ctx)}”`;
    default: {
      const inner = inlineOf(el, ctx);
      // A block inside inline content (a <div> in a <span>) still separates words.
      return BLOCK.has(el.tag) ? ` ${inner} ` : inner;
    }
  }
}

/** Text content with whitespace kept and `<br>` as a newline; dropped elements excluded. */
function rawText(el: HtmlElement): string {
  let out = "";
  for (const child of el.children) {
    if (typeof child === "string") out += child;
    else if (child.tag === "br") out += "\n";
    else if (!DROP.has(child.tag)) out += rawText(child);
  }
  return out;
}

function resolveUrl(href: string | undefined, base: URL | undefined): string | undefined {
  const value = href?.trim();
  if (value === undefined || value === "" || value.startsWith("#")) return undefined;
  try {
    const url = base === undefined ? new URL(value) : new URL(value, base);
    if (url.protocol !== "http:" && url.protocol !== "https:" && url.protocol !== "mailto:")
      return undefined;
    return url.href.replace(/[()\s]/g, (c) => encodeURIComponent(c));
  } catch {
    return base === undefined ? value.replace(/[()\s]/g, (c) => encodeURIComponent(c)) : undefined;
  }
}

function find(
  el: HtmlElement,
  test: (e: HtmlElement) => boolean,
  all?: HtmlElement[],
): HtmlElement | undefined {
  for (const child of el.children) {
    if (typeof child === "string") continue;
    if (test(child)) {
      if (all === undefined) return child;
      all.push(child);
      continue;
    }
    const found = find(child, test, all);
    if (found !== undefined && all === undefined) return found;
  }
  return undefined;
}

function extract(html: string, options: HtmlExtractionOptions, markdown: boolean): HtmlExtraction {
  const root = parseHtml(html);
  let base: URL | undefined;
  try {
    base = options.baseUrl === undefined ? undefined : new URL(options.baseUrl);
    const baseTag = find(root, (e) => e.tag === "base" && e.attrs.has("href"));
    if (baseTag !== undefined) base = new URL(baseTag.attrs.get("href") as string, base);
  } catch {
    // An unusable <base>: keep the page URL.
  }
  const titleElement = find(root, (e) => e.tag === "title");
  const ctx: RenderContext = { markdown, base, inArticle: false };
  let title = titleElement === undefined ? "" : collapse(rawText(titleElement)).trim();
  const body = find(root, (e) => e.tag === "body") ?? root;
  const articles: HtmlElement[] = [];
  find(body, (e) => e.tag === "article", articles);
  const main =
    find(body, (e) => e.tag === "main" || e.attrs.get("role") === "main") ??
    (articles.length === 1 ? articles[0] : undefined) ??
    body;
  if (title === "") {
    const h1 = find(body, (e) => e.tag === "h1");
    if (h1 !== undefined) title = paragraph(inlineOf(h1, { ...ctx, markdown: false }));
  }
  const inArticle = main.tag === "article" || main.tag === "main";
  const content = renderBlocks(main === root ? root.children : [main], { ...ctx, inArticle })
    .join("\n\n")
    .replace(/\u00a0/g, " ")
    .replace(/[ \t]+$/gm, "")
    .trim();
  return { title: title === "" ? undefined : title, content };
}

/**
 * Converts an HTML page to Markdown, keeping its main content.
 *
 * @example
 * ```ts
 * const { title, content } = htmlToMarkdown(html, { baseUrl: "https://example.com/post" });
 * // content: "# Heading\n\nA paragraph with a [link](https://example.com/next)."
 * ```
 */
export function htmlToMarkdown(html: string, options: HtmlExtractionOptions = {}): HtmlExtraction {
  return extract(html, options, true);
}

/**
 * Converts an HTML page to readable plain text: paragraphs separated by blank lines, list
 * items with `- `, no markup and no link targets.
 *
 * @example
 * ```ts
 * htmlToText("<h1>Hi</h1><p>A <b>bold</b> move.</p>").content; // "Hi\n\nA bold move."
 * ```
 */
export function htmlToText(html: string, options: HtmlExtractionOptions = {}): HtmlExtraction {
  return extract(html, options, false);
}
