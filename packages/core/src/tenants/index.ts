export {
  BudgetExceededError,
  RateLimitedError,
  ResourceLimiter,
  type RunSlot,
  type TenantLimits,
} from "./limiter.js";
export { limitModelSource, type Tenant, TenantManager, type TenantOptions } from "./tenants.js";
