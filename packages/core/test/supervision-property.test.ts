/**
 * Property test of the supervision rules: random supervision trees (strategy, restart types,
 * 2-5 children, maybe nested supervisors) and random exit schedules (crash, normal exit,
 * shutdown, kill). After every event the tree is left to settle, then the live runtime is
 * compared with a reference model of the OTP rules, written out below as the spec.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Actor,
  type ChildSpec,
  MaxRestartIntensityError,
  type Process,
  type RestartStrategy,
  type RestartType,
  Supervisor,
} from "../src/index.js";

// ------------------------------------------------------------------ plans (the generated input)

interface WorkerPlan {
  kind: "worker";
  restart: RestartType;
}

interface SupervisorPlan {
  strategy: RestartStrategy;
  maxRestarts: number;
  children: readonly ChildPlan[];
}

interface NestedPlan extends SupervisorPlan {
  kind: "supervisor";
  restart: RestartType;
}

type ChildPlan = WorkerPlan | NestedPlan;

/** How the targeted process exits. */
type ExitKind = "crash" | "normal" | "shutdown" | "kill";

/** `pick` chooses among the processes that are running when the event happens. */
interface ExitEvent {
  pick: number;
  kind: ExitKind;
}

/** Restarts are counted within this period; it is longer than any run, so all count. */
const PERIOD_MS = 60_000;

// ------------------------------------------------------------------ the reference model (spec)

/**
 * The OTP rules, as documented by BeamClaw:
 *
 * 1. A child that exits is restarted if it is `permanent`, or `transient` and the exit is
 *    abnormal (a crash, `killed`, or a child supervisor giving up with
 *    MaxRestartIntensityError, which "its own supervisor sees as a crash"). Otherwise it
 *    stays stopped; a `temporary` child's spec is removed.
 * 2. Each restart is counted; more than `maxRestarts` within the period stops the
 *    supervisor and all its children, and the supervisor exits abnormally (rule 1 applies to
 *    it in its parent).
 * 3. What is restarted: `one_for_one` the child only; `one_for_all` all children;
 *    `rest_for_one` the child and the children after it. The others in that group are
 *    stopped in reverse order (temporary ones are removed), then every child of the group
 *    is started again in order: OTP's restart_multiple_children/3 starts every
 *    non-temporary child of the group, whether or not it was running before.
 * 4. Stopping a supervisor (for any reason, killed included) stops all its children.
 * 5. A (re)started child supervisor is a fresh one: all its children, no restarts counted.
 */
interface ModelChild {
  id: string;
  plan: ChildPlan;
  running: boolean;
  /** The current incarnation, for a child supervisor that is running. */
  nested: ModelSupervisor | undefined;
}

interface ModelSupervisor {
  plan: SupervisorPlan;
  alive: boolean;
  restarts: number;
  children: ModelChild[];
}

class Model {
  /** How many times each child id has been started. */
  readonly starts = new Map<string, number>();
  readonly top: ModelSupervisor;

  constructor(plan: SupervisorPlan) {
    this.top = this.#newSupervisor(plan, "");
  }

  /** The running processes, in the order events pick from: each child, then its children. */
  targets(): Array<{ child: ModelChild; parent: ModelSupervisor; grandparent?: ModelChild }> {
    const out: Array<{ child: ModelChild; parent: ModelSupervisor; grandparent?: ModelChild }> = [];
    if (!this.top.alive) return out;
    for (const child of this.top.children) {
      if (!child.running) continue;
      out.push({ child, parent: this.top });
      if (child.nested !== undefined) {
        for (const grandchild of child.nested.children) {
          if (grandchild.running) {
            out.push({ child: grandchild, parent: child.nested, grandparent: child });
          }
        }
      }
    }
    return out;
  }

  /** Applies one exit event to the model. Returns the target, or undefined if none runs. */
  apply(event: ExitEvent): ModelChild | undefined {
    const targets = this.targets();
    if (targets.length === 0) return undefined;
    const target = targets[event.pick % targets.length]!;
    const gaveUp = this.#exit(target.parent, target.child, event.kind);
    if (gaveUp && target.grandparent !== undefined) {
      this.#exit(this.top, target.grandparent, "gave-up");
    }
    return target.child;
  }

  #newSupervisor(plan: SupervisorPlan, prefix: string): ModelSupervisor {
    const sup: ModelSupervisor = { plan, alive: true, restarts: 0, children: [] };
    plan.children.forEach((childPlan, i) => {
      const child: ModelChild = {
        id: childId(prefix, i),
        plan: childPlan,
        running: false,
        nested: undefined,
      };
      sup.children.push(child);
      this.#start(child);
    });
    return sup;
  }

  #start(child: ModelChild): void {
    child.running = true;
    this.starts.set(child.id, (this.starts.get(child.id) ?? 0) + 1);
    if (child.plan.kind === "supervisor") child.nested = this.#newSupervisor(child.plan, child.id);
  }

  /** Rule 4. */
  #stop(child: ModelChild): void {
    child.running = false;
    if (child.nested !== undefined) this.#stopSupervisor(child.nested);
    child.nested = undefined;
  }

  #stopSupervisor(sup: ModelSupervisor): void {
    sup.alive = false;
    for (const child of sup.children) if (child.running) this.#stop(child);
  }

  /** `child` of `sup` exited. Returns true if `sup` gave up (rule 2). */
  #exit(sup: ModelSupervisor, child: ModelChild, kind: ExitKind | "gave-up"): boolean {
    this.#stop(child);
    // Rule 1.
    const abnormal = kind === "crash" || kind === "kill" || kind === "gave-up";
    const restart =
      child.plan.restart === "permanent" || (child.plan.restart === "transient" && abnormal);
    if (!restart) {
      if (child.plan.restart === "temporary") remove(sup.children, child);
      return false;
    }
    // Rule 2.
    sup.restarts++;
    if (sup.restarts > sup.plan.maxRestarts) {
      this.#stopSupervisor(sup);
      return true;
    }
    // Rule 3.
    const all = sup.children;
    const group =
      sup.plan.strategy === "one_for_one"
        ? [child]
        : sup.plan.strategy === "one_for_all"
          ? all.slice()
          : all.slice(all.indexOf(child));
    for (const other of group.slice().reverse()) {
      if (other === child) continue;
      if (other.running) this.#stop(other);
      if (other.plan.restart === "temporary") remove(all, other);
    }
    for (const c of group) if (all.includes(c)) this.#start(c);
    return false;
  }
}

function childId(prefix: string, index: number): string {
  return prefix === "" ? `c${index}` : `${prefix}.w${index}`;
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i !== -1) list.splice(i, 1);
}

// ------------------------------------------------------------------ the runtime under test

class PropWorker extends Actor<never, never, "crash"> {
  protected override handleCast(): void {
    throw new Error(`${this.name} crashed`);
  }
}

/** Builds real child specs from a plan and records every process they start. */
class Harness {
  readonly starts = new Map<string, number>();
  readonly processes: Process[] = [];

  supervisor(plan: SupervisorPlan, prefix: string, name: string): Supervisor {
    const sup = new Supervisor({
      name,
      strategy: plan.strategy,
      maxRestarts: plan.maxRestarts,
      periodMs: PERIOD_MS,
      children: plan.children.map((child, i) => this.#spec(child, childId(prefix, i))),
    });
    this.processes.push(sup);
    return sup;
  }

  #spec(plan: ChildPlan, id: string): ChildSpec {
    const started = () => this.starts.set(id, (this.starts.get(id) ?? 0) + 1);
    if (plan.kind === "worker") {
      return {
        id,
        restart: plan.restart,
        start: () => {
          started();
          const worker = new PropWorker({ name: id });
          this.processes.push(worker);
          return worker.start();
        },
      };
    }
    return {
      id,
      type: "supervisor",
      restart: plan.restart,
      start: () => {
        started();
        return this.supervisor(plan, id, id).start();
      },
    };
  }
}

/** The running process of child `id` of `sup`, if any. */
async function runningChild(sup: Supervisor, id: string): Promise<Process | undefined> {
  const info = (await sup.whichChildren()).find((c) => c.id === id);
  return info?.process?.status === "running" ? info.process : undefined;
}

/** Makes `process` exit the way `kind` says. */
function makeExit(process: Process, kind: ExitKind): void {
  switch (kind) {
    case "crash":
      if (process instanceof PropWorker) process.cast("crash");
      else void process.stop(new Error(`${process.name} crashed`));
      return;
    case "normal":
    case "shutdown":
      void process.stop(kind);
      return;
    case "kill":
      process.kill();
      return;
  }
}

/** A description of the whole tree and every process ever started, for settle(). */
async function snapshot(process: Process, harness: Harness): Promise<string> {
  const describeTree = async (p: Process): Promise<string> => {
    if (!(p instanceof Supervisor) || p.status !== "running") return `${p.pid}:${p.status}`;
    let children: Awaited<ReturnType<Supervisor["whichChildren"]>>;
    try {
      children = await p.whichChildren();
    } catch {
      return `${p.pid}:${p.status}`; // began to stop while we asked
    }
    const parts: string[] = [];
    for (const c of children) {
      parts.push(`${c.id}=${c.process === undefined ? "-" : await describeTree(c.process)}`);
    }
    return `${p.pid}:running[${parts.join(",")}]`;
  };
  const statuses = harness.processes.map((p) => p.status).join(",");
  return `${await describeTree(process)} | ${statuses}`;
}

/**
 * Waits until the tree is quiescent: the same snapshot three times in a row, each taken a
 * macrotask turn later and after a round-trip through every running supervisor's mailbox.
 * Nothing in these trees waits on a timer, so a quiescent tree stays quiescent.
 */
async function settle(top: Supervisor, harness: Harness): Promise<void> {
  let previous = "";
  let stable = 0;
  for (let round = 0; round < 200; round++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const current = await snapshot(top, harness);
    if (current === previous) {
      if (++stable === 2) return;
    } else {
      previous = current;
      stable = 0;
    }
  }
  throw new Error(`the supervision tree did not settle: ${previous}`);
}

/** Asserts that the runtime matches the model. */
async function expectMatches(
  top: Supervisor,
  model: Model,
  harness: Harness,
  step: string,
): Promise<void> {
  const compare = async (real: Supervisor, expected: ModelSupervisor, path: string) => {
    const children = await real.whichChildren();
    expect(
      children.map((c) => c.id),
      `${step}: child specs of ${path}`,
    ).toEqual(expected.children.map((c) => c.id));
    for (const [i, info] of children.entries()) {
      const m = expected.children[i]!;
      expect(
        info.process?.status,
        `${step}: ${m.id} should be ${m.running ? "running" : "stopped"}`,
      ).toBe(m.running ? "running" : undefined);
      if (m.nested !== undefined && info.process !== undefined) {
        expect(info.process, `${step}: ${m.id} is a supervisor`).toBeInstanceOf(Supervisor);
        await compare(info.process as Supervisor, m.nested, m.id);
      }
    }
  };

  if (model.top.alive) {
    expect(top.status, `${step}: top supervisor`).toBe("running");
    await compare(top, model.top, "top");
  } else {
    expect(top.status, `${step}: top supervisor gave up`).toBe("stopped");
    expect(MaxRestartIntensityError.isInstance(top.exitReason), `${step}: exit reason`).toBe(true);
  }
  expect(Object.fromEntries(harness.starts), `${step}: starts per child`).toEqual(
    Object.fromEntries(model.starts),
  );
  // Nothing else is alive: every process that is not a current child has stopped.
  const countRunning = (sup: ModelSupervisor): number =>
    sup.children.reduce(
      (n, c) => n + (c.running ? 1 + (c.nested === undefined ? 0 : countRunning(c.nested)) : 0),
      0,
    );
  const expectedAlive = model.top.alive ? 1 + countRunning(model.top) : 0;
  expect(
    harness.processes.filter((p) => p.status !== "stopped").length,
    `${step}: live processes`,
  ).toBe(expectedAlive);
}

// ------------------------------------------------------------------ generators

const restartArb = fc.constantFrom<RestartType>("permanent", "transient", "temporary");
const strategyArb = fc.constantFrom<RestartStrategy>("one_for_one", "one_for_all", "rest_for_one");
const workerPlanArb: fc.Arbitrary<WorkerPlan> = restartArb.map((restart) => ({
  kind: "worker",
  restart,
}));
const nestedPlanArb: fc.Arbitrary<NestedPlan> = fc.record({
  kind: fc.constant("supervisor" as const),
  restart: restartArb,
  strategy: strategyArb,
  maxRestarts: fc.integer({ min: 0, max: 2 }),
  children: fc.array(workerPlanArb, { minLength: 1, maxLength: 3 }),
});
const treeArb: fc.Arbitrary<SupervisorPlan> = fc.record({
  strategy: strategyArb,
  maxRestarts: fc.integer({ min: 0, max: 5 }),
  children: fc.array(
    fc.oneof({ arbitrary: workerPlanArb, weight: 4 }, { arbitrary: nestedPlanArb, weight: 1 }),
    { minLength: 2, maxLength: 5 },
  ),
});
const eventsArb: fc.Arbitrary<ExitEvent[]> = fc.array(
  fc.record({
    pick: fc.nat({ max: 20 }),
    kind: fc.oneof(
      { arbitrary: fc.constant<ExitKind>("crash"), weight: 3 },
      { arbitrary: fc.constant<ExitKind>("kill"), weight: 1 },
      { arbitrary: fc.constant<ExitKind>("normal"), weight: 2 },
      { arbitrary: fc.constant<ExitKind>("shutdown"), weight: 1 },
    ),
  }),
  { minLength: 1, maxLength: 10 },
);

// ------------------------------------------------------------------ the property

describe("supervision trees (property)", () => {
  it("after every exit the running and stopped children are exactly those the OTP rules say", async () => {
    const outcomes = { gaveUp: 0, survived: 0 };
    await fc.assert(
      fc.asyncProperty(treeArb, eventsArb, async (plan, events) => {
        const harness = new Harness();
        const model = new Model(plan);
        const top = await harness.supervisor(plan, "", "top").start();
        try {
          await settle(top, harness);
          await expectMatches(top, model, harness, "after start");
          for (const [n, event] of events.entries()) {
            const target = model.apply(event);
            if (target === undefined) break; // nothing left running
            const step = `event ${n} (${event.kind} ${target.id})`;
            // Find the target's live process through the tree, as a user would.
            const parentId = target.id.includes(".") ? target.id.split(".")[0]! : undefined;
            const parent =
              parentId === undefined ? top : ((await runningChild(top, parentId)) as Supervisor);
            expect(parent, `${step}: parent of the target runs`).toBeDefined();
            const process = await runningChild(parent, target.id);
            expect(process, `${step}: target runs`).toBeDefined();
            makeExit(process!, event.kind);
            await settle(top, harness);
            await expectMatches(top, model, harness, step);
          }
          if (model.top.alive) outcomes.survived++;
          else outcomes.gaveUp++;
          await top.stop();
          for (const p of harness.processes) expect(p.status, "after stop()").toBe("stopped");
        } finally {
          top.kill();
        }
      }),
      {
        numRuns: 50,
        examples: [
          // one_for_all: a transient child exits normally (stays down), then a sibling
          // crashes: the whole group, the transient child included, is started again.
          [
            {
              strategy: "one_for_all",
              maxRestarts: 3,
              children: [
                { kind: "worker", restart: "transient" },
                { kind: "worker", restart: "permanent" },
              ],
            },
            [
              { pick: 0, kind: "normal" },
              { pick: 0, kind: "crash" },
            ],
          ],
          // Escalation: the nested supervisor gives up twice; the top one gives up too.
          [
            {
              strategy: "one_for_one",
              maxRestarts: 1,
              children: [
                { kind: "worker", restart: "permanent" },
                {
                  kind: "supervisor",
                  restart: "permanent",
                  strategy: "one_for_one",
                  maxRestarts: 0,
                  children: [{ kind: "worker", restart: "permanent" }],
                },
              ],
            },
            [
              { pick: 2, kind: "crash" },
              { pick: 2, kind: "crash" },
            ],
          ],
        ],
      },
    );
    // The generators must exercise both outcomes of the intensity rule.
    expect(outcomes.gaveUp, "runs where the top supervisor gave up").toBeGreaterThan(0);
    expect(outcomes.survived, "runs where the top supervisor survived").toBeGreaterThan(0);
  });
});
