import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import { unreadableStoredValueError } from "../src/store/index.js";

describe("unreadableStoredValueError", () => {
  it("names the value and what it threw, keeping the thrown error as the cause", () => {
    const thrown = new TypeError("proxy trap failed");
    const error = unreadableStoredValueError("kv.set: value", thrown);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toBe(
      "kv.set: value threw while it was read (proxy trap failed); only plain JSON data can be stored",
    );
    expect(error.cause).toBe(thrown);
  });

  it("words a thrown non-Error by its string form", () => {
    expect(unreadableStoredValueError("sessions.put: record", "nope").message).toBe(
      "sessions.put: record threw while it was read (nope); only plain JSON data can be stored",
    );
  });

  it("returns an InvalidArgumentError it is given as it is", () => {
    const own = new InvalidArgumentError("kv.set: value.a is not JSON");
    expect(unreadableStoredValueError("kv.set: value", own)).toBe(own);
  });
});
