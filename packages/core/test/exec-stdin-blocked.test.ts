/**
 * A command that never reads its standard input, given more input than a pipe holds: the
 * write of `stdin` cannot finish, and must not hold up the exec call — neither the hand-over
 * to the background after `yieldAfterMs` nor the kill when the run is aborted.
 */
import { describe, expect, it } from "vitest";
import { createExecTool } from "./fixtures/exec/api.js";
import { eventually, isAlive, toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { host, registry } = useGatewayExec();
// Far more than a pipe buffer (64 KiB on Linux).
const bigInput = "x".repeat(2 * 1024 * 1024);

function exec() {
  return createExecTool({
    registry,
    hosts: { gateway: host },
    approve: () => "allow-once",
    yieldAfterMs: 100,
  });
}

describe("exec with stdin the command never reads", () => {
  it("still hands the command to the background after yieldAfterMs", async () => {
    const result = (await exec().execute(
      { command: "sleep 5", stdin: bigInput },
      toolContext(),
    )) as Record<string, unknown>;
    expect(result).toMatchObject({ status: "running", backgrounded: true });
    const pid = result.pid as number;
    expect(isAlive(pid)).toBe(true);
    await registry.remove(result.slug as string);
    expect(isAlive(pid)).toBe(false);
  });

  it("kills the command when the run is aborted while the input is pending", async () => {
    const controller = new AbortController();
    const call = exec().execute(
      { command: "sleep 600", stdin: bigInput },
      toolContext({ signal: controller.signal }),
    );
    expect(await eventually(() => registry.list().length === 1)).toBe(true);
    const pid = registry.list()[0]!.pid;
    controller.abort(new Error("run aborted"));
    await expect(call).rejects.toThrow("run aborted");
    expect(isAlive(pid)).toBe(false);
    expect(registry.list()).toEqual([]);
  }, 20_000);
});
