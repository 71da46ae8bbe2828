/**
 * The Slack channel against a fake Slack (the Web API by msw, Socket Mode by a `ws` server on
 * 127.0.0.1, the Events API by signed HTTP requests): the channel conformance suite, once per
 * way events come in.
 */
import { channelConformanceSuite } from "@beamclaw/core/testing";
import { afterAll } from "vitest";
import { createSlackChannel } from "../src/slack/index.js";
import { closeFakeSlackApi } from "./slack/fake-slack-api.js";
import { SlackHttpPlatform, SlackSocketModePlatform } from "./slack/slack-platform.js";

afterAll(() => closeFakeSlackApi());

channelConformanceSuite("SlackChannel (Socket Mode)", {
  platform: () => SlackSocketModePlatform.start(),
  create: (platform) => createSlackChannel({ ...platform.channelOptions(), maxMessageLength: 500 }),
});

channelConformanceSuite("SlackChannel (Events API over HTTP)", {
  platform: () => new SlackHttpPlatform(),
  create: (platform) =>
    platform.attach(createSlackChannel({ ...platform.channelOptions(), maxMessageLength: 500 })),
});
