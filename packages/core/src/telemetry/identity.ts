/**
 * Who an operation is for — tenant, agent and session — as telemetry reports it.
 *
 * A session's runtime does not know its tenant: `TenantManager` marks the tenant's store with
 * {@link setTelemetryTenant}, and code that holds the store (sessions, cron) looks it up.
 * Tools and approvals do not hold the store; while someone listens, a session run carries its
 * identity in an `AsyncLocalStorage` scope that the tool runs and approval waits inside it
 * inherit. Nothing of this runs while nobody listens.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** Tenant, agent and session of an operation, where known. */
export interface TelemetryIdentity {
  /** The tenant (`TenantManager` id) whose runtime did the work. */
  tenant?: string;
  /** The agent id. */
  agent?: string;
  /** The session key. */
  session?: string;
}

const tenantOfStore = new WeakMap<object, string | null>();

/**
 * Marks `store` as belonging to `tenant`, so that telemetry of the sessions and cron jobs over
 * it carries the tenant. `TenantManager.add()` does this for each tenant's store; call it
 * yourself for a store you give a tenant's `CronService`. A store marked for two different
 * tenants is ambiguous and reports none (except that `TenantManager.add()` makes the mark
 * follow the tenant it adds over the store).
 *
 * @example
 * ```ts
 * setTelemetryTenant(acmeStore, "acme");
 * telemetryTenantOf(acmeStore); // "acme"
 * ```
 */
export function setTelemetryTenant(store: object, tenant: string): void {
  const known = tenantOfStore.get(store);
  tenantOfStore.set(store, known === undefined || known === tenant ? tenant : null);
}

/**
 * Marks `store` as belonging to `tenant` alone, replacing a mark left by another tenant (one
 * no longer served over it): `TenantManager.add()`, which refuses a store a live tenant of
 * its own uses, makes the mark follow the tenant now served over the store. @internal
 */
export function claimTelemetryTenant(store: object, tenant: string): void {
  tenantOfStore.set(store, tenant);
}

/**
 * The tenant `store` was marked with by {@link setTelemetryTenant}; otherwise the tenant of
 * the session run this is called within, if telemetry scoped one; otherwise `undefined`.
 */
export function telemetryTenantOf(store: object | undefined): string | undefined {
  const known = store === undefined ? undefined : tenantOfStore.get(store);
  if (known !== undefined) return known ?? undefined;
  return scope?.getStore()?.tenant;
}

let scope: AsyncLocalStorage<TelemetryIdentity> | undefined;

/**
 * The identity of the traced session run this code runs within (tool runs and approval waits
 * inherit it), or `undefined` outside one or while nobody listens.
 */
export function currentTelemetryIdentity(): TelemetryIdentity | undefined {
  return scope?.getStore();
}

/** Runs `fn` with `identity` as the current telemetry scope. @internal */
export function runInTelemetryScope<T>(identity: TelemetryIdentity, fn: () => T): T {
  scope ??= new AsyncLocalStorage<TelemetryIdentity>();
  return scope.run(identity, fn);
}
