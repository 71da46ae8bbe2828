import { describe, expect, it } from "vitest";
import {
  AbortedError,
  AlreadyRegisteredError,
  AlreadyStartedError,
  BeamClawError,
  ChildNotFoundError,
  ChildStartError,
  describe as describeReason,
  InvalidArgumentError,
  isBeamClawError,
  MaxChildrenError,
  MaxRestartIntensityError,
  NoProcessError,
  OverloadedError,
  TaskCrashedError,
  TimeoutError,
} from "../src/index.js";

interface ErrorCase {
  readonly name: string;
  readonly code: string;
  readonly make: () => BeamClawError;
  readonly isInstance: (value: unknown) => boolean;
}

const cases: readonly ErrorCase[] = [
  {
    name: "TimeoutError",
    code: "TIMEOUT",
    make: () => new TimeoutError("too slow", 50),
    isInstance: TimeoutError.isInstance,
  },
  {
    name: "OverloadedError",
    code: "OVERLOADED",
    make: () => new OverloadedError("full", 10),
    isInstance: OverloadedError.isInstance,
  },
  {
    name: "NoProcessError",
    code: "NO_PROCESS",
    make: () => new NoProcessError("gone", "normal"),
    isInstance: NoProcessError.isInstance,
  },
  {
    name: "AbortedError",
    code: "ABORTED",
    make: () => new AbortedError("cancelled"),
    isInstance: AbortedError.isInstance,
  },
  {
    name: "AlreadyStartedError",
    code: "ALREADY_STARTED",
    make: () => new AlreadyStartedError("twice"),
    isInstance: AlreadyStartedError.isInstance,
  },
  {
    name: "AlreadyRegisteredError",
    code: "ALREADY_REGISTERED",
    make: () => new AlreadyRegisteredError("taken", "name"),
    isInstance: AlreadyRegisteredError.isInstance,
  },
  {
    name: "InvalidArgumentError",
    code: "INVALID_ARGUMENT",
    make: () => new InvalidArgumentError("bad"),
    isInstance: InvalidArgumentError.isInstance,
  },
  {
    name: "ChildNotFoundError",
    code: "CHILD_NOT_FOUND",
    make: () => new ChildNotFoundError("worker"),
    isInstance: ChildNotFoundError.isInstance,
  },
  {
    name: "ChildStartError",
    code: "CHILD_START_FAILED",
    make: () => new ChildStartError("worker", new Error("boom")),
    isInstance: ChildStartError.isInstance,
  },
  {
    name: "MaxChildrenError",
    code: "MAX_CHILDREN",
    make: () => new MaxChildrenError(8),
    isInstance: MaxChildrenError.isInstance,
  },
  {
    name: "MaxRestartIntensityError",
    code: "MAX_RESTART_INTENSITY",
    make: () => new MaxRestartIntensityError(3, 5_000, new Error("boom")),
    isInstance: MaxRestartIntensityError.isInstance,
  },
  {
    name: "TaskCrashedError",
    code: "TASK_CRASHED",
    make: () => new TaskCrashedError("threw a string", { cause: "oops" }),
    isInstance: TaskCrashedError.isInstance,
  },
];

/**
 * An error from "another copy" of the library: a different class, unrelated to ours, that
 * carries the shared `Symbol.for` marker and a code.
 */
class ForeignBeamClawError extends Error {
  readonly code: string;
  constructor(code: string) {
    super(`foreign ${code}`);
    this.code = code;
    Object.defineProperty(this, Symbol.for("beamclaw.error"), { value: true, enumerable: false });
  }
}

describe("BeamClaw errors", () => {
  it.each(cases)(
    "$name has the stable code $code, its class name, and is an Error and a BeamClawError",
    ({ name, code, make }) => {
      const error = make();
      expect(error.code).toBe(code);
      expect(error.name).toBe(name);
      expect(error).toBeInstanceOf(Error);
      expect(error).toBeInstanceOf(BeamClawError);
      expect(typeof error.stack).toBe("string");
    },
  );

  it("gives every error class its own code", () => {
    const codes = cases.map((c) => c.make().code);
    expect(new Set(codes).size).toBe(cases.length);
  });

  it.each(cases)(
    "$name.isInstance recognises its own errors and no other code",
    ({ code, make, isInstance }) => {
      expect(isInstance(make())).toBe(true);
      for (const other of cases) {
        if (other.code !== code) expect(isInstance(other.make())).toBe(false);
      }
      expect(BeamClawError.isInstance(make())).toBe(true);
    },
  );

  it.each(cases)(
    "$name.isInstance recognises an error with code $code from another copy of the library",
    ({ code, isInstance }) => {
      const foreign = new ForeignBeamClawError(code);
      expect(foreign).not.toBeInstanceOf(BeamClawError);
      expect(isInstance(foreign)).toBe(true);
      expect(BeamClawError.isInstance(foreign)).toBe(true);
      expect(isBeamClawError(foreign)).toBe(true);
      expect(isBeamClawError(foreign, code)).toBe(true);
      expect(isBeamClawError(foreign, "SOMETHING_ELSE")).toBe(false);
    },
  );

  it("does not recognise look-alikes without the marker, or with a marker that is not true", () => {
    const plain = Object.assign(new Error("timeout"), { code: "TIMEOUT" });
    expect(TimeoutError.isInstance(plain)).toBe(false);
    expect(isBeamClawError(plain)).toBe(false);

    const wrongMarker = Object.assign(new Error("timeout"), {
      code: "TIMEOUT",
      [Symbol.for("beamclaw.error")]: "yes",
    });
    expect(TimeoutError.isInstance(wrongMarker)).toBe(false);

    const noCode = { [Symbol.for("beamclaw.error")]: true };
    expect(BeamClawError.isInstance(noCode)).toBe(false);

    for (const value of [null, undefined, "TIMEOUT", 42]) {
      expect(BeamClawError.isInstance(value)).toBe(false);
      expect(isBeamClawError(value, "TIMEOUT")).toBe(false);
    }
  });

  it("isBeamClawError(e, code) narrows on the code", () => {
    const error: unknown = new NoProcessError("gone");
    expect(isBeamClawError(error)).toBe(true);
    expect(isBeamClawError(error, "NO_PROCESS")).toBe(true);
    expect(isBeamClawError(error, "TIMEOUT")).toBe(false);
    expect(isBeamClawError(new Error("plain"), "NO_PROCESS")).toBe(false);
  });

  it("serialises to { name, code, message } with toJSON, without the marker", () => {
    const error = new TimeoutError("call timed out", 50);
    expect(error.toJSON()).toEqual({
      name: "TimeoutError",
      code: "TIMEOUT",
      message: "call timed out",
    });
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      name: "TimeoutError",
      code: "TIMEOUT",
      message: "call timed out",
    });
    expect(Object.getOwnPropertyDescriptor(error, Symbol.for("beamclaw.error"))).toMatchObject({
      value: true,
      enumerable: false,
    });
  });

  it("keeps cause as the standard Error.cause, and has none when not given", () => {
    const root = new Error("root");
    expect(new AbortedError("cancelled", { cause: root }).cause).toBe(root);
    expect("cause" in new AbortedError("cancelled")).toBe(false);
    const startError = new ChildStartError("db", root);
    expect(startError.cause).toBe(root);
    expect(startError.childId).toBe("db");
    expect(startError.message).toContain("root");
  });

  it("carries each error's details", () => {
    expect(new TimeoutError("t", 50).timeoutMs).toBe(50);
    expect(new OverloadedError("o", 10)).toMatchObject({ limit: 10, isRetryable: true });
    expect(new NoProcessError("n", "killed").exitReason).toBe("killed");
    expect(new AlreadyRegisteredError("a", "name").key).toBe("name");
    expect(new ChildNotFoundError("worker")).toMatchObject({ childId: "worker" });
    expect(new MaxChildrenError(8)).toMatchObject({ limit: 8, isRetryable: true });
    const last = new Error("last");
    expect(new MaxRestartIntensityError(3, 5_000, last)).toMatchObject({
      maxRestarts: 3,
      periodMs: 5_000,
      cause: last,
    });
  });

  it("describe() gives a short description of any reason", () => {
    expect(describeReason(new TimeoutError("slow", 5))).toBe("TIMEOUT: slow");
    expect(describeReason(new Error("plain"))).toBe("plain");
    expect(describeReason("shutdown")).toBe("shutdown");
    expect(describeReason({ status: 500 })).toBe('{"status":500}');
    const cyclic: { self?: unknown } = {};
    cyclic.self = cyclic;
    expect(describeReason(cyclic)).toBe("[object Object]");
  });
});
