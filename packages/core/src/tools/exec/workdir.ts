/**
 * Working-directory restriction: a command may only start inside the host's configured
 * roots. The requested directory is resolved against the first root, then every symlink
 * in it is resolved (`realpath`), and the result must lie inside the real path of a root.
 * `..` escapes and symlinks that point out are therefore both refused, and the command
 * starts in the resolved real directory, not in a path that could be re-pointed later.
 */
import { realpathSync, statSync } from "node:fs";
import path from "node:path";
import { ExecRefusedError, InvalidArgumentError } from "../../errors.js";

/**
 * Resolved allowed roots, checked once.
 *
 * @example
 * ```ts
 * const roots = new WorkdirRoots(["/srv/agent"]);
 * roots.resolve("repo"); // "/srv/agent/repo"
 * roots.resolve("../etc"); // throws ExecRefusedError (reason "cwd")
 * ```
 */
export class WorkdirRoots {
  readonly #given: readonly string[];
  #real: string[] | undefined;

  constructor(roots: readonly string[]) {
    if (roots.length === 0)
      throw new InvalidArgumentError("at least one working-directory root is required");
    for (const root of roots) {
      if (!path.isAbsolute(root)) {
        throw new InvalidArgumentError(
          `a working-directory root must be absolute, got ${JSON.stringify(root)}`,
        );
      }
    }
    this.#given = roots;
  }

  /** The roots as real paths. @throws InvalidArgumentError when a root does not exist. */
  get real(): readonly string[] {
    if (this.#real === undefined) {
      this.#real = this.#given.map((root) => {
        try {
          return realpathSync(root);
        } catch (error) {
          throw new InvalidArgumentError(`working-directory root ${root} does not exist`, {
            cause: error,
          });
        }
      });
    }
    return this.#real;
  }

  /**
   * The real directory a command asking for `cwd` starts in (default: the first root).
   *
   * @throws ExecRefusedError with reason `cwd` when it does not exist, is not a directory,
   *   or lies outside every root.
   */
  resolve(cwd: string | undefined): string {
    const roots = this.real;
    if (cwd === undefined || cwd === "") return roots[0]!;
    if (cwd.includes("\0")) throw new ExecRefusedError("cwd", "cwd contains a NUL byte", cwd);
    const requested = path.resolve(this.#given[0]!, cwd);
    let real: string;
    try {
      real = realpathSync(requested);
    } catch {
      throw new ExecRefusedError("cwd", `working directory ${cwd} does not exist`, cwd);
    }
    if (!statSync(real).isDirectory()) {
      throw new ExecRefusedError("cwd", `working directory ${cwd} is not a directory`, cwd);
    }
    const inside = roots.some(
      (root) => real === root || real.startsWith(root.endsWith("/") ? root : `${root}/`),
    );
    if (!inside) {
      throw new ExecRefusedError(
        "cwd",
        `working directory ${cwd} resolves to ${real}, outside the allowed roots (${roots.join(", ")})`,
        cwd,
      );
    }
    return real;
  }
}
