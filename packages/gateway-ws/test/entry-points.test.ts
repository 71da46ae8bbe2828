import { describeEntryPoints } from "../../../test/entry-points.js";

describeEntryPoints(new URL("..", import.meta.url), {
  "@beamclaw/gateway-ws": ["GatewayError", "GatewayServer", "createGateway", "PROTOCOL_VERSION"],
});
