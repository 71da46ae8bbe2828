/**
 * Keeps the hidden classes of the library's short-lived objects alive between their uses.
 *
 * V8 gives the instances of a class a hidden class (a "map") for each field the constructor
 * adds; only the first is held by the constructor, the others are reached through weak
 * transitions and live only as long as some instance has them. Optimized code checks those
 * maps and holds them weakly too. So a major garbage collection that runs while no instance
 * of a per-run or per-call class is alive (the idle-time GC of a server between two bursts,
 * or any full GC between two turns of a quiet session) frees the maps, and every optimized
 * function that checked one is thrown away ("weak objects" deoptimization): the next few
 * thousand turns run in the slower tiers while V8 compiles them again. Measured with one
 * runtime and one session and a full GC before each 5,000-turn round (as `bench/src/turns.mjs`
 * runs one): a turn took about 45% longer than with no GC. The maps that die are above all
 * those made by adding fields to an instance (class fields, private fields,
 * `Object.defineProperty`).
 *
 * One inert instance of each such class, made when its module loads and never used, keeps its
 * maps alive for the life of the process, at the cost of that one object. The instance must
 * be built by the same constructor, so that its fields are added in the same order, and with
 * values of the same kinds as real ones (a small integer where real instances hold small
 * integers, a fraction or a timestamp where they hold doubles, an object where they hold
 * objects): a field whose values change kind gets a new map, and the anchor would keep the old.
 *
 * @internal
 */
const KEPT = Symbol("beamclaw.keptShapes");

/**
 * Keeps `instances` (and so their hidden classes) alive for as long as `owner` lives (the
 * class, or the function, that makes such objects: in practice, the life of the process), in
 * a non-enumerable property of `owner`. Held there rather than in a module-level array, which
 * a bundler's tree-shaking sees is never read and removes, pushes and all. Only for inert
 * instances made for that purpose (see the module's documentation); returns the first.
 * @internal
 */
export function keepShape<T extends object>(owner: object, ...instances: [T, ...object[]]): T {
  const held = (owner as { [KEPT]?: object[] })[KEPT];
  if (held !== undefined) held.push(...instances);
  else Object.defineProperty(owner, KEPT, { value: [...instances] });
  return instances[0];
}
