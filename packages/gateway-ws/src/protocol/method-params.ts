/**
 * The params fields each built-in method takes. OpenClaw's protocol schema closes every
 * method's params (`additionalProperties: false`), so a field that is not in this list is
 * refused before the method runs, naming the field: a client's typo (`sessonKey`) is an error,
 * not a field silently ignored.
 */
import { invalidRequest } from "./errors.js";

/**
 * The fields a method's params may have: the protocol's, and BeamClaw's own additions, as
 * space-separated names.
 */
interface MethodFields {
  /**
   * The properties of the method's params definition in OpenClaw's `protocol.schema.json`
   * (the branches' together for a `CronRunParams`-style `anyOf`). For the methods the schema
   * gives no params definition, the fields OpenClaw's own gateway reads.
   */
  protocol: string;
  /** Fields BeamClaw reads that the protocol does not have (the README's "Params"). */
  beamclaw?: string;
}

/**
 * Every built-in method's params fields; `open` for a method whose protocol params take any
 * field (`WakeParams` has `additionalProperties: true`). Methods not listed here (a channel's,
 * a host's) check their own params.
 */
const METHOD_PARAMS: Readonly<Record<string, MethodFields | "open">> = {
  agent: {
    protocol:
      "message agentId provider model to replyTo sessionId sessionKey expectedExistingSessionId " +
      "thinking deliver attachments channel replyChannel accountId replyAccountId threadId " +
      "groupId groupChannel groupSpace timeout bestEffortDeliver lane cwd " +
      "cleanupBundleMcpOnRunEnd modelRun promptMode extraSystemPrompt bootstrapContextMode " +
      "bootstrapContextRunKind acpTurnSource internalRuntimeHandoffId " +
      "internalExecutionIdentityRetry internalExecutionIdentityRecoveryAttempt " +
      "execApprovalFollowupExpectedSessionId internalEvents inputProvenance " +
      "suppressPromptPersistence sessionEffects sourceReplyDeliveryMode disableMessageTool " +
      "swarmCollector swarmOutputSchema forceRestartSafeTools forceCodeModeTools " +
      "voiceWakeTrigger idempotencyKey label",
  },
  "agent.identity.get": { protocol: "agentId sessionKey" },
  "agent.wait": { protocol: "runId timeoutMs" },
  "agents.list": { protocol: "" },
  "chat.abort": { protocol: "sessionKey agentId runId preserveSideRuns" },
  "chat.history": {
    protocol:
      "sessionKey agentId cursor limit offset pendingBefore inputRunIds messageId sessionId " +
      "maxChars",
  },
  "chat.inject": { protocol: "sessionKey agentId message label" },
  "chat.message.get": { protocol: "sessionKey agentId messageId maxChars" },
  "chat.send": {
    protocol:
      "sessionKey agentId sessionId message intent thinking fastMode fastAutoOnSeconds " +
      "queueMode deliver originatingChannel originatingTo originatingAccountId " +
      "originatingThreadId replyToId attachments toolBindings timeoutMs systemInputProvenance " +
      "systemProvenanceReceipt suppressCommandInterpretation expectedLeafEntryId " +
      "expectedSessionRoutingContract expectedPermissionMode expectedToolOverrides " +
      "idempotencyKey",
  },
  // The handshake's params (checked by `parseConnectParams`): `ConnectParams`, with `transports`
  // and `modelCatalog`, which other OpenClaw releases' clients send.
  connect: {
    protocol:
      "minProtocol maxProtocol client caps commands computerUse workerRuns permissions pathEnv " +
      "role scopes device auth locale userAgent transports modelCatalog",
  },
  "commands.list": { protocol: "sessionKey agentId provider scope includeArgs" },
  "config.get": { protocol: "" },
  "cron.add": {
    protocol:
      "name declarationKey displayName owner agentId sessionKey description enabled " +
      "deleteAfterRun schedule pacing trigger sessionTarget wakeMode payload delivery " +
      "failureAlert",
  },
  "cron.list": {
    protocol:
      "includeDisabled limit offset query enabled scheduleKind lastRunStatus trigger sortBy " +
      "sortDir agentId compact includeDeliveryPreviews",
  },
  "cron.remove": { protocol: "id jobId" },
  "cron.run": { protocol: "id mode expectedProcessInstanceId jobId" },
  "cron.runs": {
    protocol:
      "agentId scope id jobId runId limit offset statuses status deliveryStatuses " +
      "deliveryStatus query sortDir",
  },
  "cron.status": { protocol: "" },
  "cron.update": { protocol: "id patch expectedConfigRevision jobId" },
  "device.pair.approve": { protocol: "requestId" },
  "device.pair.list": { protocol: "" },
  "device.pair.reject": { protocol: "requestId" },
  "device.pair.remove": { protocol: "deviceId" },
  "device.pair.rename": { protocol: "deviceId label" },
  "device.pair.setupCode": {
    protocol: "publicUrl preferRemoteUrl includeQr bootstrapProfile joinUrl",
  },
  "device.pair.setupStatus": { protocol: "setupId" },
  "device.token.revoke": { protocol: "deviceId role" },
  "device.token.rotate": { protocol: "deviceId role scopes" },
  "exec.approval.list": { protocol: "" },
  "exec.approval.request": {
    protocol:
      "id command commandArgv systemRunPlan env cwd nodeId host security ask warningText scope " +
      "unavailableDecisions commandSpans agentId resolvedPath sessionKey sessionId runId " +
      "toolCallId turnSourceChannel turnSourceTo turnSourceAccountId turnSourceThreadId " +
      "approvalReviewerDeviceIds requireDeliveryRoute suppressDelivery " +
      "deliverToApprovalClientsOnly timeoutMs twoPhase",
  },
  "exec.approval.resolve": { protocol: "id decision reviewer grantExpiresInDays" },
  "exec.approval.waitDecision": { protocol: "id" },
  health: { protocol: "probe" },
  "last-heartbeat": { protocol: "" },
  "logs.tail": { protocol: "cursor limit maxBytes" },
  "models.list": { protocol: "agentId includeProviderCapabilities preparedOnly refresh view" },
  "node.describe": { protocol: "nodeId" },
  "node.event": { protocol: "event payload payloadJSON" },
  "node.invoke": {
    protocol:
      "nodeId command params timeoutMs idempotencyKey sessionKey turnSourceChannel " +
      "turnSourceTo turnSourceAccountId turnSourceThreadId",
  },
  "node.invoke.result": { protocol: "id nodeId ok payload payloadJSON error" },
  "node.list": { protocol: "" },
  "node.pair.approve": { protocol: "requestId" },
  "node.pair.list": { protocol: "" },
  "node.pair.reject": { protocol: "requestId" },
  "node.pair.remove": { protocol: "nodeId" },
  "node.pending.ack": { protocol: "ids" },
  "node.pending.drain": { protocol: "maxItems" },
  "node.pending.enqueue": { protocol: "nodeId type priority expiresInMs wake" },
  "node.pending.pull": { protocol: "", beamclaw: "maxItems" },
  "sessions.abort": { protocol: "key runId agentId clearQueued" },
  "sessions.cleanup": { protocol: "agent allAgents enforce activeKey fixMissing fixDmScope" },
  "sessions.compact": { protocol: "key agentId maxLines", beamclaw: "sessionKey" },
  "sessions.compaction.list": { protocol: "key agentId" },
  "sessions.create": {
    protocol:
      "key idempotencyKey agentId label displayName category model contextWindow " +
      "thinkingLevel fastMode permissionMode toolOverrides incognito visibility catalogId " +
      "parentSessionKey spawnDepth fork forkFrom emitCommandHooks succeedsParent task message " +
      "attachments projectId projectGitUrl worktree worktreeBaseRef worktreeName execNode cwd",
  },
  "sessions.delete": {
    protocol:
      "key agentId deleteTranscript expectedSessionId expectedLifecycleRevision " +
      "expectedSessionUpdatedAt emitLifecycleHooks archivedOnly",
    beamclaw: "sessionKey",
  },
  "sessions.describe": {
    protocol: "key includeDerivedTitles includeLastMessage",
    beamclaw: "sessionKey",
  },
  "sessions.fork": { protocol: "sessionKey agentId entryId", beamclaw: "key" },
  "sessions.get": { protocol: "", beamclaw: "key sessionKey limit" },
  "sessions.list": {
    protocol:
      "limit offset activeMinutes requireLastInteraction sortBy includeGlobal includeUnknown " +
      "configuredAgentsOnly includeDerivedTitles includeLastMessage label boardFace creatorId " +
      "ownerId ownerFirst involvingMe involvingProfileId includePeople spawnedBy agentId search " +
      "archived",
  },
  "sessions.messages.subscribe": { protocol: "key agentId includeApprovals" },
  "sessions.messages.unsubscribe": { protocol: "key agentId" },
  "sessions.patch": {
    protocol:
      "key agentId expectedSessionId expectedLifecycleRevision expectedPermissionMode " +
      "expectedToolOverrides expectedMarkedUnreadAt label icon color category boardFace " +
      "statusNote attention ttlMinutes archived pinned unread contextWindow thinkingLevel " +
      "fastMode toolOverrides verboseLevel traceLevel reasoningLevel responseUsage " +
      "elevatedLevel execHost execSecurity execAsk execNode permissionMode model " +
      "completionOwnerSessionKey inheritedToolPolicyVersion inheritedToolAllow " +
      "inheritedToolDeny sendPolicy groupActivation",
    beamclaw: "sessionKey",
  },
  "sessions.preview": { protocol: "keys limit maxChars" },
  "sessions.reset": { protocol: "key agentId reason", beamclaw: "sessionKey" },
  "sessions.resolve": {
    protocol:
      "key sessionId label shortId slugHint agentId spawnedBy includeGlobal includeUnknown " +
      "allowMissing",
  },
  "sessions.rewind": { protocol: "sessionKey agentId entryId", beamclaw: "key" },
  "sessions.search": { protocol: "agentId sessionKeys query limit" },
  "sessions.send": {
    protocol: "key agentId message thinking attachments timeoutMs idempotencyKey",
    beamclaw: "sessionKey queueMode",
  },
  "sessions.steer": {
    protocol: "key agentId message thinking attachments timeoutMs idempotencyKey",
    beamclaw: "sessionKey",
  },
  "sessions.subscribe": { protocol: "" },
  "sessions.unsubscribe": { protocol: "" },
  "sessions.usage": {
    protocol:
      "key agentId agentScope startDate endDate mode range groupBy includeHistorical " +
      "utcOffset timeZone limit includeContextWeight",
  },
  "sessions.usage.logs": { protocol: "key limit", beamclaw: "agentId" },
  "sessions.usage.timeseries": { protocol: "key", beamclaw: "agentId" },
  "set-heartbeats": { protocol: "enabled" },
  "skills.status": { protocol: "agentId sessionKey" },
  status: { protocol: "" },
  "system-presence": { protocol: "" },
  "tools.catalog": { protocol: "agentId includePlugins" },
  "tools.effective": { protocol: "agentId sessionKey" },
  "usage.cost": { protocol: "startDate endDate days mode utcOffset agentId agentScope" },
  "usage.status": { protocol: "sessionKey" },
  wake: "open",
};

function names(text: string | undefined): string[] {
  return text === undefined ? [] : text.split(" ").filter((name) => name !== "");
}

const allowed = new Map<string, ReadonlySet<string> | "open">(
  Object.entries(METHOD_PARAMS).map(([method, fields]) => [
    method,
    fields === "open" ? "open" : new Set([...names(fields.protocol), ...names(fields.beamclaw)]),
  ]),
);

/**
 * The params fields `method` takes (the protocol's and BeamClaw's), `open` when it takes any,
 * or `undefined` for a method that is not built in.
 */
export function methodParamFields(method: string): ReadonlySet<string> | "open" | undefined {
  return allowed.get(method);
}

/** How many single-character edits turn `a` into `b` (for "did you mean"). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The known field `unknown` is most likely a typo of (at most 2 edits away), if any. */
function closest(unknown: string, known: ReadonlySet<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of known) {
    const distance = editDistance(unknown.toLowerCase(), name.toLowerCase());
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Refuses the fields of `params` that built-in `method` does not take: `INVALID_REQUEST` with
 * `details: { code: "INVALID_PARAMS", field, unknownFields }` (`field` the first of them), its
 * message suggesting the field a typo was probably meant to be. Methods not built in, and
 * those whose protocol params are open, are not checked here.
 */
export function checkParamFields(method: string, params: Readonly<Record<string, unknown>>): void {
  const known = allowed.get(method);
  if (known === undefined || known === "open") return;
  const unknownFields = Object.keys(params).filter((field) => !known.has(field));
  if (unknownFields.length === 0) return;
  const described = unknownFields.map((field) => {
    const guess = closest(field, known);
    return guess === undefined ? field : `${field} (did you mean ${guess}?)`;
  });
  throw invalidRequest(
    `invalid ${method} params: unknown field${unknownFields.length === 1 ? "" : "s"} ${described.join(", ")}`,
    { code: "INVALID_PARAMS", field: unknownFields[0]!, unknownFields },
  );
}
