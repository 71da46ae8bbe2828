/**
 * LineChat: a tiny multi-user chat server over TCP, the "platform" this example's channel
 * plugin connects to. People connect with `nc 127.0.0.1 7070`; bots connect and speak JSON
 * lines (the first line decides which).
 *
 * People type:            Bots send (one JSON object per line):
 *   <nick>      (first)     {"type":"hello","nick":"bot","token":"..."}      -> welcome | error
 *   /join #room             {"type":"say","ref":"r1","room":"#room","text":"..."}   -> ack {ref,id}
 *   /msg <nick> <text>      {"type":"say","ref":"r2","to":"alice","text":"...","replyTo":"m3"}
 *   /reply <id> <text>      {"type":"edit","ref":"r3","id":"m7","text":"..."}      -> ack {ref,id}
 *   <text>  (to the room)   {"type":"typing","room":"#room"} | {"type":"typing","to":"alice"}
 *
 * Bots receive {"type":"message","id","from":{"nick","name"?},"room"?|"to"?,"text",
 * "mentions":[nicks],"replyTo"?:{"id","from"?},"at"}.
 */
import net from "node:net";

/** A message as the server keeps and delivers it. */
export interface ChatMessage {
  id: string;
  from: { nick: string; name?: string };
  /** A room (`#general`) for room messages... */
  room?: string;
  /** ...or the recipient's nick for direct messages. */
  to?: string;
  text: string;
  /** Nicks mentioned with `@nick`. */
  mentions: string[];
  replyTo?: { id: string; from?: string };
  /** Epoch ms. */
  at: number;
}

/** Something a bot did, as the server saw it (for tests and logs). */
export type BotAction =
  | { type: "say"; bot: string; message: ChatMessage }
  | { type: "edit"; bot: string; id: string; text: string; room?: string; to?: string }
  | { type: "typing"; bot: string; room?: string; to?: string };

/** Options of {@link startChatServer}. */
export interface ChatServerOptions {
  host?: string;
  /** 0 picks a free port. Default 7070. */
  port?: number;
  /** Bots must present this token. Default: any token. */
  botToken?: string;
}

interface Client {
  socket: net.Socket;
  kind: "unknown" | "person" | "bot";
  nick?: string;
  room: string;
}

/** A running LineChat server. */
export interface ChatServer {
  readonly port: number;
  readonly host: string;
  /** What bots did, in order. */
  readonly actions: BotAction[];
  /** Posts a message as if a person had typed it (tests choose its id). */
  post(message: Omit<ChatMessage, "at" | "mentions"> & { mentions?: string[] }): void;
  /** Closes a client's connection (a dropped connection, for tests). */
  kick(nick: string): boolean;
  /** True while a client with this nick is connected. */
  isOnline(nick: string): boolean;
  close(): Promise<void>;
}

const MAX_LINE = 64 * 1024;

/**
 * Starts a LineChat server.
 *
 * @example
 * ```ts
 * const server = await startChatServer({ port: 7070 });
 * // nc 127.0.0.1 7070
 * await server.close();
 * ```
 */
export async function startChatServer(options: ChatServerOptions = {}): Promise<ChatServer> {
  const clients = new Set<Client>();
  const messages = new Map<string, ChatMessage>();
  const actions: BotAction[] = [];
  let nextId = 1;

  const byNick = (nick: string) => [...clients].find((c) => c.nick === nick);
  const writeLine = (client: Client, line: string) => {
    if (!client.socket.destroyed) client.socket.write(`${line}\n`);
  };
  const render = (m: ChatMessage, edited = false) =>
    `${m.room === undefined ? "[dm]" : `[${m.room}]`} ${m.from.nick}${edited ? " (edited)" : ""}: ${m.text}  (${m.id})`;

  /** Delivers a message to everyone who should see it (not its sender). */
  const deliver = (m: ChatMessage, edited = false) => {
    for (const client of clients) {
      if (client.nick === undefined || client.nick === m.from.nick) continue;
      const sees =
        m.room !== undefined
          ? client.kind === "bot" || client.room === m.room
          : client.nick === m.to;
      if (!sees) continue;
      if (client.kind === "bot") {
        if (!edited) writeLine(client, JSON.stringify({ type: "message", ...m }));
      } else writeLine(client, render(m, edited));
    }
  };

  const mentionsOf = (text: string) => [...text.matchAll(/@([\w-]+)/g)].map((match) => match[1]!);

  const post: ChatServer["post"] = (input) => {
    const message: ChatMessage = {
      ...input,
      mentions: input.mentions ?? mentionsOf(input.text),
      at: Date.now(),
    };
    if (message.replyTo !== undefined && message.replyTo.from === undefined) {
      const original = messages.get(message.replyTo.id);
      if (original !== undefined) message.replyTo = { id: original.id, from: original.from.nick };
    }
    messages.set(message.id, message);
    deliver(message);
  };

  const onPersonLine = (client: Client, line: string) => {
    if (client.nick === undefined) {
      const nick = line.trim();
      if (!/^[a-z][\w-]{0,31}$/i.test(nick) || byNick(nick) !== undefined) {
        writeLine(client, "That nick is taken or invalid (letters, digits, - and _). Your nick?");
        return;
      }
      client.nick = nick;
      writeLine(
        client,
        `Hi ${nick}! You are in ${client.room}. /join #room, /msg <nick> <text>, /reply <id> <text>.`,
      );
      return;
    }
    const say = (fields: { room?: string; to?: string; replyTo?: string }, text: string) => {
      if (text.length === 0) return;
      post({
        id: `m${nextId++}`,
        from: { nick: client.nick! },
        text,
        ...(fields.room === undefined ? {} : { room: fields.room }),
        ...(fields.to === undefined ? {} : { to: fields.to }),
        ...(fields.replyTo === undefined ? {} : { replyTo: { id: fields.replyTo } }),
      });
    };
    const [command, first, ...rest] = line.trim().split(/\s+/);
    if (command === "/join" && first?.startsWith("#")) {
      client.room = first;
      writeLine(client, `You are in ${first}.`);
    } else if (command === "/msg" && first !== undefined) {
      say({ to: first }, rest.join(" "));
    } else if (command === "/reply" && first !== undefined) {
      const original = messages.get(first);
      if (original === undefined) writeLine(client, `No message ${first}.`);
      else if (original.room !== undefined)
        say({ room: original.room, replyTo: first }, rest.join(" "));
      else
        say(
          {
            to: original.from.nick === client.nick ? original.to! : original.from.nick,
            replyTo: first,
          },
          rest.join(" "),
        );
    } else {
      say({ room: client.room }, line.trim());
    }
  };

  const onBotLine = (client: Client, line: string) => {
    let request: Record<string, unknown>;
    try {
      request = JSON.parse(line) as Record<string, unknown>;
    } catch {
      writeLine(client, JSON.stringify({ type: "error", message: "not JSON" }));
      return;
    }
    const ref = request.ref;
    const room = typeof request.room === "string" ? request.room : undefined;
    const to = typeof request.to === "string" ? request.to : undefined;
    const fail = (message: string) =>
      writeLine(client, JSON.stringify({ type: "error", ref, message }));
    if (client.nick === undefined) {
      if (request.type !== "hello" || typeof request.nick !== "string")
        return fail("say hello first");
      if (options.botToken !== undefined && request.token !== options.botToken) {
        writeLine(client, JSON.stringify({ type: "error", message: "bad token", fatal: true }));
        client.socket.end();
        return;
      }
      if (byNick(request.nick) !== undefined) return fail(`nick ${request.nick} is taken`);
      client.nick = request.nick;
      writeLine(client, JSON.stringify({ type: "welcome", nick: client.nick }));
      return;
    }
    if (request.type === "say") {
      if (typeof request.text !== "string" || (room === undefined && to === undefined))
        return fail("say needs text and a room or to");
      if (request.text.length > 4000) return fail("text too long");
      const message: ChatMessage = {
        id: `m${nextId++}`,
        from: { nick: client.nick },
        text: request.text,
        mentions: mentionsOf(request.text),
        at: Date.now(),
        ...(room === undefined ? { to: to! } : { room }),
        ...(typeof request.replyTo === "string" ? { replyTo: { id: request.replyTo } } : {}),
      };
      messages.set(message.id, message);
      actions.push({ type: "say", bot: client.nick, message });
      writeLine(client, JSON.stringify({ type: "ack", ref, id: message.id }));
      deliver(message);
    } else if (request.type === "edit") {
      const original = typeof request.id === "string" ? messages.get(request.id) : undefined;
      if (
        original === undefined ||
        original.from.nick !== client.nick ||
        typeof request.text !== "string"
      ) {
        return fail("no such message of yours");
      }
      original.text = request.text;
      actions.push({
        type: "edit",
        bot: client.nick,
        id: original.id,
        text: request.text,
        ...(original.room === undefined ? { to: original.to! } : { room: original.room }),
      });
      writeLine(client, JSON.stringify({ type: "ack", ref, id: original.id }));
      deliver(original, true);
    } else if (request.type === "typing") {
      actions.push({
        type: "typing",
        bot: client.nick,
        ...(room === undefined ? { to: to! } : { room }),
      });
      for (const other of clients) {
        if (other.kind !== "person") continue;
        if ((room !== undefined && other.room === room) || other.nick === to) {
          writeLine(other, `* ${client.nick} is typing...`);
        }
      }
    } else {
      fail(`unknown request type ${JSON.stringify(request.type)}`);
    }
  };

  const server = net.createServer((socket) => {
    const client: Client = { socket, kind: "unknown", room: "#general" };
    clients.add(client);
    socket.setEncoding("utf8");
    let buffer = "";
    socket.on("data", (data: string) => {
      buffer += data;
      if (buffer.length > MAX_LINE && !buffer.includes("\n")) {
        socket.destroy();
        return;
      }
      let newline = buffer.indexOf("\n");
      while (newline !== -1) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (client.kind === "unknown") {
          client.kind = line.startsWith("{") ? "bot" : "person";
        }
        if (line.length > 0) {
          if (client.kind === "bot") onBotLine(client, line);
          else onPersonLine(client, line);
        }
        newline = buffer.indexOf("\n");
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => clients.delete(client));
    // People are asked for a nick; a bot's first line is its hello.
    setImmediate(() => {
      if (client.kind === "unknown" && !socket.destroyed)
        socket.write("Welcome to LineChat. Your nick?\n");
    });
  });

  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 7070, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    host,
    actions,
    post,
    kick(nick) {
      const client = byNick(nick);
      client?.socket.destroy();
      return client !== undefined;
    },
    isOnline: (nick) => byNick(nick) !== undefined,
    async close() {
      for (const client of clients) client.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
