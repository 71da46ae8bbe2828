/**
 * Files people share in Slack, as the host gets them: images and PDFs downloaded from
 * `url_private_download` with the bot token and handed over inline, everything else (and
 * whatever could not be downloaded) described; `check_file_info` stubs looked up with
 * `files.info`; and, through a real `ChannelManager`, the model seeing the image and reading
 * the PDF without ever being given Slack's private URL.
 */
import { type InboundMessageInput, InvalidArgumentError } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { readSlackMessage } from "../src/slack/inbound.js";
import { createSlackChannel, type SlackChannelOptions } from "../src/slack/index.js";
import { managedHost } from "./shared-harness.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import {
  cleanUp,
  cleanups,
  PNG,
  recordingContext,
  recordingLogger,
  silentLogger,
  until,
} from "./slack/harness.js";
import {
  eventCallback,
  SlackHttpPlatform,
  type SlackPlatform,
  SlackSocketModePlatform,
} from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

const PDF = Buffer.from("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n");
const JPEG = Buffer.from("\xff\xd8\xff\xe0\x00\x10JFIF a photo", "latin1");

const ALICE = "U0ALICE001";
const DM = "D0ALICEDM1";

/** An Events API channel against a fresh fake Slack, with a recording context and logger. */
async function started(options: Partial<SlackChannelOptions> = {}) {
  const platform = new SlackHttpPlatform();
  cleanups.push(() => platform.close());
  const plugin = platform.attach(
    createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false, ...options }),
  );
  const recording = recordingContext(plugin);
  const { entries: logs, logger } = recordingLogger();
  await plugin.start({ ...recording.ctx, logger });
  cleanups.push(async () => {
    recording.controller.abort();
    await plugin.stop();
  });
  return { platform, plugin, logs, ...recording };
}

/** Slack's `file_share` message event, in Alice's DM with the bot. */
function fileShare(
  platform: SlackPlatform,
  files: Array<Record<string, unknown>>,
  text = "have a look",
) {
  const ts = platform.workspace.nextTs();
  return eventCallback({
    type: "message",
    subtype: "file_share",
    text,
    files,
    upload: false,
    user: ALICE,
    display_as_bot: false,
    ts,
    event_ts: ts,
    channel: DM,
    channel_type: "im",
  });
}

/** Delivers a `file_share` message and gives back what the host got. */
async function share(
  run: Awaited<ReturnType<typeof started>>,
  files: Array<Record<string, unknown>>,
  text?: string,
): Promise<InboundMessageInput> {
  const before = run.received.length;
  const answer = await run.platform.send(fileShare(run.platform, files, text));
  expect(answer.status).toBe(200);
  return until("the message", () => run.received[before]);
}

describe("Slack files: images and PDFs inline", () => {
  it("downloads a PNG and a PDF of one message with the bot token and hands them over inline", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const png = workspace.addFile({ name: "chart.png", mimetype: "image/png", bytes: PNG });
    const pdf = workspace.addFile({ name: "report.pdf", mimetype: "application/pdf", bytes: PDF });
    const input = await share(run, [png, pdf], "the numbers");
    expect(input.text).toBe("the numbers");
    expect(input.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "chart.png",
        size: PNG.length,
        url: png.url_private_download,
        privateUrl: true,
        data: PNG.toString("base64"),
      },
      {
        kind: "file",
        mediaType: "application/pdf",
        name: "report.pdf",
        size: PDF.length,
        url: pdf.url_private_download,
        privateUrl: true,
        data: PDF.toString("base64"),
      },
    ]);
    expect(workspace.fileRequests).toHaveLength(2);
    for (const request of workspace.fileRequests) {
      expect(request).toMatchObject({ authorization: `Bearer ${workspace.botToken}`, status: 200 });
    }
    expect(new Set(workspace.fileRequests.map((r) => r.fileId))).toEqual(new Set([png.id, pdf.id]));
    expect(run.logs.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("downloads the files of one message side by side", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const files = [1, 2, 3].map((n) =>
      workspace.addFile({ name: `p${n}.png`, mimetype: "image/png", bytes: PNG, delayMs: 300 }),
    );
    const began = Date.now();
    const input = await share(run, files);
    // One after another they would take 900 ms.
    expect(Date.now() - began).toBeLessThan(800);
    expect(input.attachments?.map((a) => a.data)).toEqual(files.map(() => PNG.toString("base64")));
  });

  it("a slow download holds only its own channel: another channel's message goes ahead, each channel in order", async () => {
    const run = await started();
    const { workspace } = run.platform;
    let requested = false;
    const slow = workspace.addFile({
      name: "slow.png",
      mimetype: "image/png",
      bytes: PNG,
      delayMs: 1_000,
      onRequest: () => {
        requested = true;
      },
    });
    const message = (channel: string, channelType: string, text: string) => {
      const ts = workspace.nextTs();
      return eventCallback({
        type: "message",
        text,
        user: ALICE,
        ts,
        event_ts: ts,
        channel,
        channel_type: channelType,
      });
    };
    const first = run.platform.send(fileShare(run.platform, [slow], "first, with a slow file"));
    await until("the download", () => requested);
    // Alice's next DM waits for her first; her message in a channel does not.
    const second = run.platform.send(message(DM, "im", "second, in the DM"));
    const elsewhere = await run.platform.send(
      message("C0GENERAL1", "channel", `<@${FAKE_BOT.userId}> meanwhile, in #general`),
    );
    expect(elsewhere.status).toBe(200);
    expect(run.received.map((m) => m.text)).toEqual(["meanwhile, in #general"]);
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect(run.received.map((m) => m.text)).toEqual([
      "meanwhile, in #general",
      "first, with a slow file",
      "second, in the DM",
    ]);
    expect(run.received[1]?.attachments?.[0]?.data).toBe(PNG.toString("base64"));
  });

  it("at most 8 downloads run at once; the rest wait for a slot", async () => {
    const run = await started();
    const { workspace } = run.platform;
    let requests = 0;
    const files = Array.from({ length: 12 }, (_, n) =>
      workspace.addFile({
        name: `p${n}.png`,
        mimetype: "image/png",
        bytes: PNG,
        delayMs: 600,
        onRequest: () => requests++,
      }),
    );
    // Slack allows 10 files a message: two messages, their downloads started as they arrive.
    const first = run.platform.send(fileShare(run.platform, files.slice(0, 10), "ten"));
    const second = run.platform.send(fileShare(run.platform, files.slice(10), "two"));
    await until("the first downloads", () => requests === 8);
    await new Promise<void>((resolve) => setTimeout(resolve, 200));
    expect(requests).toBe(8);
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect(requests).toBe(12);
    expect(run.received.map((m) => m.attachments?.length)).toEqual([10, 2]);
    for (const input of run.received) {
      for (const a of input.attachments ?? []) expect(a.data).toBe(PNG.toString("base64"));
    }
  });

  it("a redelivery while the files are still downloading shares the download", async () => {
    const run = await started();
    const { workspace } = run.platform;
    let requests = 0;
    const png = workspace.addFile({
      name: "slow.png",
      mimetype: "image/png",
      bytes: PNG,
      delayMs: 400,
      onRequest: () => requests++,
    });
    const event = fileShare(run.platform, [png], "slow one");
    const first = run.platform.send(event);
    // Slack retries an event not answered within 3 s; here, sooner. The retry joins the
    // event's taking under way (not handed over again); the same message as another event
    // (`app_mention` beside `message`, its own event_id) shares the download.
    await until("the first download", () => requests === 1);
    const retry = run.platform.send(event, 1);
    const sameMessage = run.platform.send({ ...event, event_id: `${event.event_id}M` });
    const answers = await Promise.all([first, retry, sameMessage]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    // Every answer came from a finished taking: all hand-overs are done.
    expect(run.received).toHaveLength(2);
    expect(requests).toBe(1);
    for (const input of run.received) {
      expect(input.attachments?.[0]?.data).toBe(PNG.toString("base64"));
    }
  });

  it("downloads a shared text file (a snippet, a CSV) and hands it over inline as it is", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const csv = Buffer.from("region,sales\nEMEA,12\nAPAC,9\n");
    const html = Buffer.from("<!DOCTYPE html><p>a page someone shared</p>");
    const file = workspace.addFile({ name: "sales.csv", mimetype: "text/csv", bytes: csv });
    const page = workspace.addFile({ name: "page.html", mimetype: "text/html", bytes: html });
    const input = await share(run, [file, page], "totals?");
    expect(input.attachments?.map((a) => [a.name, a.mediaType, a.data])).toEqual([
      ["sales.csv", "text/csv", csv.toString("base64")],
      ["page.html", "text/html", html.toString("base64")],
    ]);
  });

  it("takes the type from the bytes: a JPEG named image/png is handed over as a JPEG", async () => {
    const run = await started();
    const file = run.platform.workspace.addFile({
      name: "photo.png",
      mimetype: "image/png",
      bytes: JPEG,
    });
    const input = await share(run, [file]);
    expect(input.attachments?.[0]).toMatchObject({
      kind: "image",
      mediaType: "image/jpeg",
      data: JPEG.toString("base64"),
    });
  });
});

describe("Slack files: limits", () => {
  it("does not download an image whose declared size is over inlineImageMaxBytes", async () => {
    const run = await started({ attachments: { inlineImageMaxBytes: 16 } });
    const { workspace } = run.platform;
    const big = workspace.addFile({ name: "big.png", mimetype: "image/png", bytes: PNG });
    expect(PNG.length).toBeGreaterThan(16);
    const input = await share(run, [big]);
    expect(input.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "big.png",
        size: PNG.length,
        url: big.url_private_download,
        privateUrl: true,
      },
    ]);
    expect(workspace.fileRequests).toEqual([]);
  });

  it("drops the download of a file larger than it declared, with or without Content-Length", async () => {
    const run = await started({ attachments: { inlineImageMaxBytes: 64 } });
    const { workspace } = run.platform;
    const larger = Buffer.concat([PNG, Buffer.alloc(200, 0x41)]);
    const declaredLength = workspace.addFile({
      name: "liar.png",
      mimetype: "image/png",
      bytes: PNG,
      served: larger,
    });
    const streamed = workspace.addFile({
      name: "streamed.png",
      mimetype: "image/png",
      bytes: PNG,
      served: larger,
      contentLength: false,
    });
    const input = await share(run, [declaredLength, streamed]);
    expect(workspace.fileRequests).toHaveLength(2);
    expect(input.attachments).toHaveLength(2);
    for (const attachment of input.attachments ?? []) {
      expect(attachment.data).toBeUndefined();
      expect(attachment).toMatchObject({ kind: "image", privateUrl: true, size: PNG.length });
    }
    const warnings = run.logs.filter((l) => l.message === "slack file could not be downloaded");
    expect(warnings.map((w) => w.data)).toEqual([
      { fileId: declaredLength.id, error: "the file is larger than 64 bytes" },
      { fileId: streamed.id, error: "the file is larger than 64 bytes" },
    ]);
  });

  it("inlineImageMaxBytes: 0 turns image downloads off; PDFs are still downloaded", async () => {
    const run = await started({ attachments: { inlineImageMaxBytes: 0 } });
    const { workspace } = run.platform;
    const png = workspace.addFile({ name: "chart.png", mimetype: "image/png", bytes: PNG });
    const pdf = workspace.addFile({ name: "report.pdf", mimetype: "application/pdf", bytes: PDF });
    const input = await share(run, [png, pdf]);
    expect(input.attachments?.[0]?.data).toBeUndefined();
    expect(input.attachments?.[1]?.data).toBe(PDF.toString("base64"));
    expect(workspace.fileRequests.map((r) => r.fileId)).toEqual([pdf.id]);
  });

  it("does not download other files (an archive, a voice clip): they are described", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const zip = workspace.addFile({
      name: "logs.zip",
      mimetype: "application/zip",
      bytes: Buffer.from("PK\x03\x04 archive", "latin1"),
    });
    const audio = workspace.addFile({
      name: "audio_message.m4a",
      mimetype: "audio/mp4",
      bytes: Buffer.from("....ftypM4A audio", "latin1"),
    });
    const svg = workspace.addFile({
      name: "logo.svg",
      mimetype: "image/svg+xml",
      bytes: Buffer.from("<svg xmlns='http://www.w3.org/2000/svg'/>"),
    });
    const input = await share(run, [zip, audio, svg]);
    expect(input.attachments).toEqual([
      {
        kind: "file",
        mediaType: "application/zip",
        name: "logs.zip",
        size: 12,
        url: zip.url_private_download,
        privateUrl: true,
      },
      {
        kind: "audio",
        mediaType: "audio/mp4",
        name: "audio_message.m4a",
        size: 17,
        url: audio.url_private_download,
        privateUrl: true,
      },
      {
        kind: "image",
        mediaType: "image/svg+xml",
        name: "logo.svg",
        size: 41,
        url: svg.url_private_download,
        privateUrl: true,
      },
    ]);
    expect(workspace.fileRequests).toEqual([]);
  });

  it("refuses invalid limits with InvalidArgumentError naming the option", () => {
    const base = { botToken: "xoxb-1", signingSecret: "s" };
    for (const attachments of [
      { inlineImageMaxBytes: -1 },
      { inlineDocumentMaxBytes: 1.5 },
      { inlineImageMaxBytes: Number.NaN },
      { inlineDocumentMaxBytes: "10" as unknown as number },
    ]) {
      expect(
        () => createSlackChannel({ ...base, attachments }),
        JSON.stringify(attachments),
      ).toThrow(InvalidArgumentError);
    }
    expect(() => createSlackChannel({ ...base, attachments: { inlineImageMaxBytes: -1 } })).toThrow(
      /attachments\.inlineImageMaxBytes/,
    );
    expect(
      createSlackChannel({
        ...base,
        attachments: { inlineImageMaxBytes: 0, inlineDocumentMaxBytes: 0 },
      }),
    ).toBeDefined();
  });
});

describe("Slack files: failed downloads", () => {
  it("without files:read Slack serves its sign-in page: no data, a warning naming the scope", async () => {
    const run = await started();
    const { workspace } = run.platform;
    workspace.filesRead = false;
    const png = workspace.addFile({ name: "chart.png", mimetype: "image/png", bytes: PNG });
    const input = await share(run, [png], "see the chart");
    expect(input.text).toBe("see the chart");
    expect(input.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "chart.png",
        size: PNG.length,
        url: png.url_private_download,
        privateUrl: true,
      },
    ]);
    expect(workspace.fileRequests).toEqual([
      { fileId: png.id, authorization: `Bearer ${workspace.botToken}`, status: 200 },
    ]);
    const warning = run.logs.find((l) => l.message === "slack file could not be downloaded");
    expect(warning?.level).toBe("warn");
    expect(warning?.data?.fileId).toBe(png.id);
    expect(String(warning?.data?.error)).toContain("files:read");
    // The token never reaches the logs.
    expect(JSON.stringify(run.logs)).not.toContain(workspace.botToken);
  });

  it("hands a file Slack answers 404 or 403 for over without data; the message is still delivered", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const gone = workspace.addFile({
      name: "gone.png",
      mimetype: "image/png",
      bytes: PNG,
      status: 404,
    });
    const forbidden = workspace.addFile({
      name: "secret.pdf",
      mimetype: "application/pdf",
      bytes: PDF,
      status: 403,
    });
    const input = await share(run, [gone, forbidden], "two files");
    expect(input.text).toBe("two files");
    expect(input.attachments?.map((a) => [a.name, a.data])).toEqual([
      ["gone.png", undefined],
      ["secret.pdf", undefined],
    ]);
    const warnings = run.logs.filter((l) => l.message === "slack file could not be downloaded");
    expect(warnings.map((w) => w.data)).toEqual([
      { fileId: gone.id, error: "the file download answered 404" },
      { fileId: forbidden.id, error: "the file download answered 403" },
    ]);
    expect(JSON.stringify(run.logs)).not.toContain(workspace.botToken);
  });

  it("never sends the bot token to a host that is not Slack's", async () => {
    const run = await started();
    const input = await share(run, [
      {
        id: "F0ELSEWHER",
        name: "chart.png",
        mimetype: "image/png",
        size: PNG.length,
        url_private_download: "https://files.example.invalid/chart.png",
      },
    ]);
    expect(input.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "chart.png",
        size: PNG.length,
        url: "https://files.example.invalid/chart.png",
        privateUrl: true,
      },
    ]);
    const warning = run.logs.find((l) => l.message === "slack file could not be downloaded");
    expect(warning?.data).toMatchObject({ fileId: "F0ELSEWHER" });
    expect(String(warning?.data?.error)).toContain("not on a Slack file host");
  });

  it("a stop during a download neither refuses the message as malformed nor warns", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false });
    const recording = recordingContext(plugin);
    const { entries: logs, logger } = recordingLogger();
    await plugin.start({ ...recording.ctx, logger });
    cleanups.push(async () => {
      recording.controller.abort();
      await plugin.stop();
    });
    let downloading = false;
    const slow = platform.workspace.addFile({
      name: "slow.png",
      mimetype: "image/png",
      bytes: PNG,
      delayMs: 5_000,
      onRequest: () => {
        downloading = true;
      },
    });
    const payload = fileShare(platform, [slow]);
    platform.server.deliver(payload);
    await until("the download to start", () => downloading);
    const stopped = Date.now();
    await plugin.stop();
    await until("the message to be let go", () => platform.workspace.fileRequests.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The download was cut short by the stop, not waited out.
    expect(Date.now() - stopped).toBeLessThan(2_000);
    expect(logs.filter((l) => l.level === "error")).toEqual([]);
    expect(logs.some((l) => l.message === "slack file could not be downloaded")).toBe(false);
    expect(platform.server.isAcked(payload.event_id)).toBe(false);
    for (const input of recording.received) {
      expect(input.attachments?.[0]?.data).toBeUndefined();
    }
  });
});

describe("Slack files: check_file_info stubs", () => {
  it("reads a stub as a file to look up, keeping the files' order", () => {
    const read = readSlackMessage(
      {
        type: "message",
        subtype: "file_share",
        channel: DM,
        channel_type: "im",
        user: ALICE,
        text: "",
        ts: "1700000000.000100",
        files: [
          { id: "F0STUB0001", mode: "file_access", file_access: "check_file_info" },
          {
            id: "F0WHOLE001",
            name: "a.pdf",
            mimetype: "application/pdf",
            url_private_download: "https://files.slack.com/files-pri/T0-F0WHOLE001/download/a.pdf",
          },
          { id: "F0TOMB0001", mode: "tombstone" },
        ],
      },
      { userId: FAKE_BOT.userId },
    );
    if (typeof read === "string") throw new Error(read);
    expect(read.files).toEqual([
      { id: "F0STUB0001" },
      {
        id: "F0WHOLE001",
        attachment: {
          kind: "file",
          mediaType: "application/pdf",
          name: "a.pdf",
          url: "https://files.slack.com/files-pri/T0-F0WHOLE001/download/a.pdf",
          privateUrl: true,
        },
      },
    ]);
    expect(read.attachments).toEqual([read.files[1]?.attachment]);
  });

  it("looks a stub up with files.info and downloads it; a stub that cannot be looked up is skipped", async () => {
    const run = await started();
    const { workspace } = run.platform;
    const png = workspace.addFile({ name: "shared.png", mimetype: "image/png", bytes: PNG });
    const input = await share(run, [
      { id: png.id, mode: "file_access", file_access: "check_file_info", created: 0, user: "" },
      { id: "F0NOSUCH01", mode: "file_access", file_access: "check_file_info" },
    ]);
    expect(workspace.callsOf("files.info").map((c) => [c.args.file, c.token])).toEqual([
      [png.id, workspace.botToken],
      ["F0NOSUCH01", workspace.botToken],
    ]);
    expect(input.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "shared.png",
        size: PNG.length,
        url: png.url_private_download,
        privateUrl: true,
        data: PNG.toString("base64"),
      },
    ]);
    const skipped = run.logs.find((l) => l.message.startsWith("slack file could not be looked up"));
    expect(skipped).toMatchObject({
      level: "warn",
      data: { fileId: "F0NOSUCH01", error: "Slack answered file_not_found" },
    });
  });

  it("without files:read the lookup fails: the stub is skipped with a warning naming the scope", async () => {
    const run = await started();
    const { workspace } = run.platform;
    workspace.filesRead = false;
    const input = await share(
      run,
      [{ id: "F0STUB0002", mode: "file_access", file_access: "check_file_info" }],
      "still here",
    );
    expect(input.text).toBe("still here");
    expect(input.attachments).toBeUndefined();
    const skipped = run.logs.find((l) => l.message.startsWith("slack file could not be looked up"));
    expect(skipped?.level).toBe("warn");
    expect(skipped?.message).toContain("files:read");
  });
});

describe("Slack files through a ChannelManager", () => {
  it("the model sees the image and reads the PDF; Slack's private URL never reaches it", async () => {
    const platform = new SlackHttpPlatform();
    cleanups.push(() => platform.close());
    const plugin = platform.attach(
      createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false }),
    );
    const { provider } = await managedHost(
      plugin,
      { dmPolicy: "open" },
      { cleanups, reply: "a rising line", logger: silentLogger },
    );
    const { workspace } = platform;
    const png = workspace.addFile({ name: "chart.png", mimetype: "image/png", bytes: PNG });
    const pdf = workspace.addFile({ name: "report.pdf", mimetype: "application/pdf", bytes: PDF });
    const zip = workspace.addFile({
      name: "data.zip",
      mimetype: "application/zip",
      bytes: Buffer.from("PK\x03\x04", "latin1"),
    });
    const answer = await platform.send(fileShare(platform, [png, pdf, zip], "what does it show?"));
    expect(answer).toMatchObject({ status: 200, body: { ok: true, status: "accepted" } });
    await until("the model request", () => provider.requests.length === 1);
    const request = provider.requests[0]!;
    const user = request.messages.at(-1)!;
    expect(user.role).toBe("user");
    expect(user.content).toContainEqual({
      type: "image",
      mediaType: "image/png",
      data: PNG.toString("base64"),
    });
    expect(user.content).toContainEqual(
      expect.objectContaining({
        type: "file",
        mediaType: "application/pdf",
        data: PDF.toString("base64"),
      }),
    );
    const text = user.content.map((part) => (part.type === "text" ? part.text : "")).join("\n");
    expect(text).toContain("what does it show?");
    expect(text).toContain("[file: data.zip, application/zip]");
    const serialized = JSON.stringify(request);
    for (const url of [png, pdf, zip].map((f) => String(f.url_private_download))) {
      expect(serialized).not.toContain(url);
    }
    expect(serialized).not.toContain("files.slack.com");
    expect(serialized).not.toContain(workspace.botToken);
    await until("the answer in Slack", () => workspace.posted.length === 1);
    expect(workspace.posted[0]).toMatchObject({ channel: DM, text: "a rising line" });
  });
});
