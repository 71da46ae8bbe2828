/**
 * The shared Store conformance suite from `@beamclaw/core/testing`, run unchanged against
 * FsStore on real files: one directory per namespace under a temp directory.
 */
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { storeConformanceSuite } from "@beamclaw/core/testing";
import { afterAll } from "vitest";
import { createFsStore } from "../src/index.js";

const root = mkdtempSync(path.join(os.tmpdir(), "store-fs-conformance-"));

storeConformanceSuite("FsStore", {
  create: (namespace) => createFsStore({ dir: path.join(root, namespace) }),
  cleanup: async (namespaces) => {
    for (const namespace of namespaces) {
      await rm(path.join(root, namespace), { recursive: true, force: true });
    }
  },
  persistsAcrossInstances: true,
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
