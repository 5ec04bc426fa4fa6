/**
 * Work that must not be lost when its store is briefly away, but that no caller waits for: it is
 * tried once at once and, while it fails, again in the background after growing pauses, until it
 * succeeds, its time runs out, too many others are waiting, or its owner stops. One mechanism for
 * the provisioner's clean-ups (identity/provisioning.ts: releasing a reservation, settling an
 * identity whose record's outcome is unknown) and the directory's writes after an ACS change
 * (identity/directory-records.ts); each says what its work is and how each ending is logged.
 *
 * Written here rather than taken from a retry library (p-retry, async-retry): those retry while
 * the caller waits, and what is needed is the opposite, an answer after the first try, the rest
 * in the background, and, at shutdown, an end to every pause without waiting for it.
 */

/** How a piece of work ended, told once to its `end`. */
export type RetryEnding =
  /** Its first try did it: nothing waited. */
  | "at-once"
  /** A later try did it, after waiting. */
  | "done"
  /** Its time ran out with the store still away. */
  | "gave-up"
  /** The owner stopped first (shutdown), or had stopped before the first try failed. */
  | "stopped"
  /** Not retried at all: the most that may wait were already waiting. */
  | "over-cap";

export interface RetriedWork {
  /** One try. Done unless it throws or resolves `false`. */
  attempt(): Promise<unknown>;
  /** Its first try failed and it now waits for the next: said once. */
  waiting?(): void;
  /** How it ended, once; `error` is the last try's failure (none for "at-once" and "done"). */
  end(how: RetryEnding, error?: unknown): void;
}

export interface BackgroundRetries {
  /**
   * Tries `work` now. Resolves after that first try, true when it did the work; when it did not,
   * the tries go on in the background (or the work ends at once: stopped, over the cap).
   */
  run(work: RetriedWork): Promise<boolean>;
  /** How many pieces of work are waiting for a next try. */
  readonly waiting: number;
  /** Resolves once every piece of work started so far has ended, its retries included. */
  settled(): Promise<void>;
  /** Ends every wait now ("stopped"); from now on a failed first try is not retried. */
  stop(): void;
}

export interface BackgroundRetriesOptions {
  /** The pauses before each next try (the last one repeats). */
  delaysMs: readonly number[];
  /**
   * How long a piece of work is retried, from its first try: no pause starts after this (the try
   * after the last pause may end a little later).
   */
  forMs: number;
  /** At most this many wait at once; beyond, a failed first try ends "over-cap". */
  max: number;
  /**
   * The cap was reached: said once, and again only after every wait has ended (a log line per
   * refused piece of work would flood the log in the outage that fills the queue).
   */
  overCap?(): void;
}

const FAILED = Symbol("failed");

export function createBackgroundRetries(options: BackgroundRetriesOptions): BackgroundRetries {
  const { delaysMs, forMs, max } = options;
  let stopped = false;
  let waiting = 0;
  let overCapSaid = false;
  const running = new Set<Promise<void>>();
  /**
   * The pauses under way, each with what `stop` does to it: end its work ("stopped") there and
   * then, so an owner that logs in `end` has logged before `stop` returns.
   */
  const pauses = new Set<() => void>();

  /**
   * Waits `ms`; resolves true then. Resolves false when the owner stopped, having ended the work
   * itself (`stopNow`) if the stop came during the pause.
   */
  const pause = (ms: number, stopNow: () => void) =>
    new Promise<boolean>((resolve) => {
      if (stopped) {
        stopNow();
        resolve(false);
        return;
      }
      const wake = () => {
        clearTimeout(timer);
        pauses.delete(wake);
        stopNow();
        resolve(false);
      };
      const timer = setTimeout(() => {
        pauses.delete(wake);
        resolve(true);
      }, ms);
      timer.unref();
      pauses.add(wake);
    });

  /** The try's failure, or undefined when it did the work. */
  const tryOnce = (work: RetriedWork): Promise<unknown> =>
    work.attempt().then(
      (result) => (result === false ? FAILED : undefined),
      (error: unknown) => error ?? FAILED,
    );

  /** The whole life of one piece of work; resolves `first` after its first try. */
  async function lifetime(work: RetriedWork, first: (done: boolean) => void): Promise<void> {
    const started = performance.now();
    let failure = await tryOnce(work);
    if (failure === undefined) {
      first(true);
      work.end("at-once");
      return;
    }
    first(false);
    const errorOf = () => (failure === FAILED ? undefined : failure);
    if (stopped) {
      work.end("stopped", errorOf());
      return;
    }
    if (waiting >= max) {
      if (!overCapSaid) {
        overCapSaid = true;
        options.overCap?.();
      }
      work.end("over-cap", errorOf());
      return;
    }
    waiting++;
    try {
      work.waiting?.();
      for (let attempt = 0; ; attempt++) {
        const delay = delaysMs[Math.min(attempt, delaysMs.length - 1)]!;
        if (performance.now() - started >= forMs) {
          work.end("gave-up", errorOf());
          return;
        }
        if (!(await pause(delay, () => work.end("stopped", errorOf())))) {
          return;
        }
        failure = await tryOnce(work);
        if (failure === undefined) {
          work.end("done");
          return;
        }
      }
    } finally {
      waiting--;
      if (waiting === 0) {
        overCapSaid = false;
      }
    }
  }

  return {
    run(work) {
      return new Promise<boolean>((resolve) => {
        const whole: Promise<void> = lifetime(work, resolve).finally(() => running.delete(whole));
        running.add(whole);
      });
    },

    get waiting() {
      return waiting;
    },

    async settled() {
      while (running.size > 0) {
        await Promise.allSettled([...running]);
      }
    },

    stop() {
      stopped = true;
      for (const wake of [...pauses]) {
        wake();
      }
    },
  };
}
