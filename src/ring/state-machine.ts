import { RingError } from './errors.js';

/** For each state, the states it may move to. */
export type TransitionTable<S extends string> = Readonly<Record<S, readonly S[]>>;

/**
 * A string-union state with one way to change it. A move the table does not allow is a
 * bug and throws; a move from a state the caller did not expect is a lost race (say,
 * the lease was lost while a resign was under way) and returns false.
 */
export class StateMachine<S extends string> {
  private current: S;

  constructor(
    private readonly what: string,
    private readonly table: TransitionTable<S>,
    initial: S,
    private readonly onChange: (from: S, to: S) => void,
  ) {
    this.current = initial;
  }

  get state(): S {
    return this.current;
  }

  /** Moves to `to` if the current state is one of `allowedFrom`; reports whether it moved. */
  transition(allowedFrom: readonly S[], to: S): boolean {
    const from = this.current;
    if (!allowedFrom.includes(from)) return false;
    if (!this.table[from].includes(to)) {
      throw new RingError('illegal-transition', `${this.what} cannot move from ${from} to ${to}`);
    }

    this.current = to;
    this.onChange(from, to);

    return true;
  }
}
