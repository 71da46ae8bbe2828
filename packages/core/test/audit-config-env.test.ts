/**
 * `${...}` in a configuration that is not a reference (`${MY-TOKEN}`, the shell's
 * `${TOKEN:default}`, `${TOKEN }`): an error naming its path and line, never literal text
 * that becomes a token or a URL. `$${` still writes a literal `${`.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, parseConfigYaml } from "../src/index.js";

const env = { TOKEN: "s3cret-s3cret-s3cret" };

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (ConfigError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

function file(token: string): string {
  return [
    "agents: { main: { model: local/llama3 } }",
    "gateway:",
    "  auth:",
    "    mode: token",
    `    token: "${token}"`,
    "",
  ].join("\n");
}

describe("a malformed ${...} in the configuration", () => {
  it.each([
    ["${MY-TOKEN}", "${MY-TOKEN}"],
    ["${TOKEN:default}", "${TOKEN:default}"],
    ["${TOKEN }", "${TOKEN }"],
    ["${ TOKEN }", "${ TOKEN }"],
    ["prefix-${1TOKEN}-suffix", "${1TOKEN}"],
  ])("%s is an error naming the path and line, not a literal value", (token, shown) => {
    const error = configErrorOf(() => parseConfigYaml(file(token), { env }));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ path: "gateway.auth.token", line: 5 });
    expect(error.issues[0]?.message).toContain(`"${shown}" is not a reference`);
    expect(error.message).toContain("${NAME:-default}");
  });

  it("an unclosed ${ is an error too", () => {
    const error = configErrorOf(() =>
      parseConfig(
        { agents: [{ id: "main", model: "local/llama3", systemPrompt: "costs ${PRICE" }] },
        { env },
      ),
    );
    expect(error.issues[0]?.path).toBe("agents[0].systemPrompt");
    expect(error.issues[0]?.message).toContain('"${PRICE" is not a reference');
  });

  it("valid references, defaults and $${ escapes are unchanged", () => {
    const config = parseConfigYaml(
      [
        "agents:",
        "  main:",
        "    model: local/llama3",
        '    systemPrompt: "use $${MY-TOKEN} and $${ x } as written; default ${UNSET:-d}"',
        'gateway: { auth: { mode: token, token: "${TOKEN}" } }',
        "",
      ].join("\n"),
      { env },
    );
    expect(config.agents[0]?.systemPrompt).toBe("use ${MY-TOKEN} and ${ x } as written; default d");
    expect(config.gateway.auth).toMatchObject({ token: env.TOKEN });
  });
});
