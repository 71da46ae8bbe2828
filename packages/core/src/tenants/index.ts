export {
  BudgetExceededError,
  RateLimitedError,
  ResourceLimiter,
  type ResourceLimiterOptions,
  type RunSlot,
  type TenantLimits,
  type TenantUsageSnapshot,
} from "./limiter.js";
export { limitModelSource, type Tenant, TenantManager, type TenantOptions } from "./tenants.js";
