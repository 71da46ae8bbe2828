// The README's example, verbatim but for the import of this package from its source
// (test/readme.test.ts checks it): typechecked with the package, never imported by a test (it
// needs an Anthropic key and npx).
import { AgentRuntime, createProviderChain, MemoryStore } from "@beamclaw/core";
import { createAnthropicProvider } from "@beamclaw/providers";
import { McpToolServer } from "../src/index.js";

const store = new MemoryStore();
await store.open();
const runtime = new AgentRuntime({
  store,
  models: createProviderChain({ providers: [createAnthropicProvider()] }),
  agents: [{ id: "main", model: "anthropic/claude-sonnet-4-5", tools: ["*"] }],
});
await runtime.start();

const files = new McpToolServer({
  name: "files",
  command: "npx",
  args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"],
});
await files.start({ registry: runtime.tools }); // files__read_file, files__list_directory, ...

const run = await runtime.session("agent:main:main").send("What is in /srv/docs?");
console.log((await run.result).text);

await files.stop(); // unregisters the tools, ends the server's process
await runtime.stop();
await store.close();
