import { describeEntryPoints } from "../../../test/entry-points.js";

describeEntryPoints(new URL("..", import.meta.url), {
  "@beamclaw/store-fs": ["FsStore", "createFsStore", "kernelFilesystemOf"],
});
