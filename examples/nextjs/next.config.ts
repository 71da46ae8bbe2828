import type { NextConfig } from "next";

const config: NextConfig = {
  // @beamclaw/core and @beamclaw/providers are bundled. They are ESM with no native parts,
  // so Turbopack bundles them like app code; in this monorepo they are workspace links, which
  // Turbopack cannot load as externals anyway (it reports "Module not found").
  //
  // `vitest` must stay out of the bundle: `@beamclaw/core/testing` (loaded only when
  // BEAMCLAW_SCRIPTED=1, for the scripted model) has an optional `import("vitest")` for its
  // conformance suites. As an external it is left to Node at run time, where it fails
  // harmlessly outside a test runner, instead of pulling vitest into the server bundle.
  serverExternalPackages: ["vitest"],
  poweredByHeader: false,
  reactStrictMode: true,
};

export default config;
