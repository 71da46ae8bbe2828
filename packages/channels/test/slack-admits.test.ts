/**
 * Slack: a message's images and PDFs are downloaded from `url_private_download` (and
 * `check_file_info` stubs looked up with `files.info`) before the message is handed over,
 * and only when the host takes the message (`ctx.admits`): nothing is fetched for a sender
 * not paired or a channel message that does not mention the bot. Through a real
 * `ChannelManager`, against the fake Slack (Events API over HTTP, Web API and file hosts
 * behind msw), counting the requests for files.
 */
import type { ChannelSettings } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createSlackChannel } from "../src/slack/index.js";
import { managedHost, PNG } from "./shared-harness.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import { cleanUp, cleanups, silentLogger, until } from "./slack/harness.js";
import { eventCallback, SlackHttpPlatform } from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

const EVE = "U0EVE00001";
const ALICE = "U0ALICE001";
const GENERAL = "C0GENERAL1";

/** A `ChannelManager` running the Slack channel (Events API) against a fresh fake Slack. */
async function managed(settings: ChannelSettings) {
  const platform = new SlackHttpPlatform();
  cleanups.push(() => platform.close());
  const plugin = platform.attach(
    createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false }),
  );
  const { manager, provider } = await managedHost(plugin, settings, {
    cleanups,
    reply: "a chart",
    logger: silentLogger,
  });
  const { workspace } = platform;
  /** A `file_share` message with a PNG (or a stub of one), answered with the host's status. */
  const share = async (
    user: string,
    where: { channel: string; type: "im" | "channel" },
    text: string,
    options: { stub?: boolean } = {},
  ) => {
    const png = workspace.addFile({ name: "chart.png", mimetype: "image/png", bytes: PNG });
    const ts = workspace.nextTs();
    const file =
      options.stub === true
        ? { id: png.id, mode: "file_access", file_access: "check_file_info", created: 0, user: "" }
        : png;
    const answer = await platform.send(
      eventCallback({
        type: "message",
        subtype: "file_share",
        text,
        files: [file],
        upload: false,
        user,
        display_as_bot: false,
        ts,
        event_ts: ts,
        channel: where.channel,
        channel_type: where.type,
      }),
    );
    return (answer.body as { status?: string }).status;
  };
  const pairingNotices = () =>
    workspace.posted.filter((p) => String(p.text).includes("pairing code"));
  return { workspace, manager, provider, share, pairingNotices };
}

describe("nothing is fetched for a message the host turns away", () => {
  it("dmPolicy pairing: an unknown sender's files are neither downloaded nor looked up, and the pairing code is sent once; once approved, the next file is downloaded", async () => {
    const { workspace, manager, provider, share, pairingNotices } = await managed({
      dmPolicy: "pairing",
    });
    const dm = { channel: "D0EVEDM001", type: "im" } as const;
    expect(await share(EVE, dm, "look")).toBe("pairing");
    expect(await share(EVE, dm, "look again", { stub: true })).toBe("pairing");
    await until("the pairing code", () => pairingNotices().length === 1);
    expect(workspace.fileRequests).toEqual([]);
    expect(workspace.callsOf("files.info")).toEqual([]);

    const [request] = await manager.pairing.pending("slack");
    await manager.approvePairing("slack", request!.code, "owner");
    expect(await share(EVE, dm, "and now?")).toBe("accepted");
    await until("the model's request", () => provider.requests.length === 1);
    expect(workspace.fileRequests).toHaveLength(1);
    expect(provider.requests[0]!.messages.at(-1)!.content).toContainEqual({
      type: "image",
      mediaType: "image/png",
      data: PNG.toString("base64"),
    });
    expect(pairingNotices()).toHaveLength(1);
  });

  it("requireMention: a channel message that does not mention the bot downloads nothing; one that does downloads its file", async () => {
    const { workspace, provider, share } = await managed({ groupPolicy: "open" });
    const general = { channel: GENERAL, type: "channel" } as const;
    expect(await share(ALICE, general, "a chart")).toBe("ignored");
    expect(workspace.fileRequests).toEqual([]);
    expect(await share(ALICE, general, `<@${FAKE_BOT.userId}> what does it show?`)).toBe(
      "accepted",
    );
    await until("the model's request", () => provider.requests.length === 1);
    expect(workspace.fileRequests).toHaveLength(1);
  });
});
