/**
 * The shared Store conformance suite, unchanged, against the real Redis server: each
 * namespace is its own key prefix, removed (SCAN + DEL) after each test.
 */
import { storeConformanceSuite } from "@beamclaw/core/testing";
import { createRedisStore } from "../src/index.js";
import { deletePrefixes, prefixOf, REDIS_URL } from "./support/redis.js";

storeConformanceSuite("RedisStore", {
  create: (namespace) => createRedisStore({ url: REDIS_URL, prefix: prefixOf(namespace) }),
  cleanup: (namespaces) => deletePrefixes(namespaces.map(prefixOf)),
  persistsAcrossInstances: true,
});
